-- Typed impressions with derived counts. `is_labeled` is false for MIND test-split rows.
select
    impression_id,
    mind_impression_id,
    source_split,
    user_id,
    cast(time as timestamp) as time,
    cast(day as date) as day,
    coalesce(history, []::varchar[]) as history,
    len(coalesce(history, []::varchar[])) as history_length,
    candidate_ids,
    candidate_labels,
    len(candidate_ids) as n_candidates,
    list_count(candidate_labels) = len(candidate_ids) as is_labeled,
    cast(coalesce(list_sum(candidate_labels), 0) as integer) as n_clicks
from {{ source('raw', 'behaviors') }}
