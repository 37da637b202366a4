-- Every rejected input line in one place, with its reason.
select
    'news' as entity,
    source_file,
    line_number,
    reason,
    detail,
    raw_line,
    cast(null as date) as day
from {{ source('raw', 'news_quarantine') }}
union all
select
    'behaviors' as entity,
    source_file,
    line_number,
    reason,
    detail,
    raw_line,
    cast(day as date) as day
from {{ source('raw', 'behaviors_quarantine') }}
