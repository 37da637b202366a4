{#-
Incremental models that rebuild only what their source rows changed.

A model built from `stg_behaviors` one key at a time (`impressions` by day, `user_histories` by
user) keeps, in the schema `dbt_state`, one signature per key of the source rows it was built
from: their count and the sum of a hash of the columns it reads. Each build computes the
signatures again (`record_changed_keys`, a pre-hook), deletes the rows of every key whose
signature differs (a new day, a re-ingested day, a day that is gone), builds the rows of those
keys only (`changed_keys()` in the model's filter) and, once they are in, keeps the new
signatures (`keep_signatures`, a post-hook, inside the same transaction). A night that adds one
day then costs one day, not the whole history. A first build, `dbt build --full-refresh`, or a
build without kept signatures rebuilds every key. `dbt_state.<model>__changed` stays until the
next build: the model's tests read it to check only the rows this build wrote.
-#}

{% macro signature_relation(suffix) -%}
    {{ return(api.Relation.create(
        database=this.database, schema='dbt_state', identifier=this.identifier ~ '__' ~ suffix
    )) }}
{%- endmacro %}


{% macro record_changed_keys(key, columns) -%}
    {%- set pending = signature_relation('pending') -%}
    {%- set built = signature_relation('built') -%}
    {%- set changed = signature_relation('changed') -%}
    {%- set has_built = is_incremental() and adapter.get_relation(
        database=built.database, schema=built.schema, identifier=built.identifier
    ) is not none -%}
    create schema if not exists {{ built.without_identifier() }};
    create or replace table {{ pending }} as
    select {{ key }} as key, count(*) as n, sum(hash({{ columns | join(', ') }})) as signature
    from {{ ref('stg_behaviors') }}
    group by {{ key }};
    create or replace table {{ changed }} as
    {% if has_built -%}
        select coalesce(p.key, b.key) as key
        from {{ pending }} as p
        full join {{ built }} as b on b.key = p.key
        where p.n is distinct from b.n or p.signature is distinct from b.signature
    {%- else -%}
        select key from {{ pending }}
    {%- endif %};
    {% if is_incremental() -%}
        delete from {{ this }}
        {% if has_built %}where {{ key }} in (select key from {{ changed }}){% endif %};
    {%- endif %}
{%- endmacro %}


{% macro changed_keys() -%}
    (select key from {{ signature_relation('changed') }})
{%- endmacro %}


{% macro keep_signatures() -%}
    {%- set pending = signature_relation('pending') -%}
    create or replace table {{ signature_relation('built') }} as select * from {{ pending }};
    drop table {{ pending }};
{%- endmacro %}
