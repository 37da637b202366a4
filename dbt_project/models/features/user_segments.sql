-- Cold vs warm users (GENRE: cold = at most `cold_max_clicks` known clicks).
select
    user_id,
    history_length,
    case
        when history_length <= {{ var('cold_max_clicks') }} then 'cold' else 'warm'
    end as segment
from {{ ref('user_histories') }}
