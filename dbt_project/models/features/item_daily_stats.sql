-- Per item and day: how often it was shown and clicked (labelled impressions only).
select
    news_id,
    day,
    count(*) as impressions,
    sum(label) as clicks,
    sum(label) / count(*) as ctr
from {{ ref('impressions') }}
where label is not null
group by news_id, day
