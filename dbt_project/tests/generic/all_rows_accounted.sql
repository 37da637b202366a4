{#- Every impression of the parent appears in this model (no impression lost in a join). -#}
{% test all_rows_accounted(model, parent, key) %}
select p.{{ key }}
from {{ parent }} as p
left join {{ model }} as m on m.{{ key }} = p.{{ key }}
where m.{{ key }} is null
{% endtest %}
