-- One row per (impression, candidate): the unit every scorer is trained and evaluated on.
select
    b.impression_id,
    b.mind_impression_id,
    b.source_split,
    b.user_id,
    b.time,
    b.day,
    c.position,
    c.news_id,
    c.label
from {{ ref('stg_behaviors') }} as b,
    lateral (
        select
            unnest(b.candidate_ids) as news_id,
            unnest(b.candidate_labels) as label,
            unnest(generate_series(1, len(b.candidate_ids))) as position
    ) as c
