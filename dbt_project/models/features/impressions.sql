-- One row per (impression, candidate): the unit every scorer is trained and evaluated on.
-- Incremental by day (macros/changed_keys.sql): a build rebuilds the days whose impressions
-- changed since the last one and keeps the others.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook="{{ record_changed_keys('day', ['impression_id', 'mind_impression_id', 'source_split', 'user_id', 'time', 'candidate_ids', 'candidate_labels']) }}",
    post_hook="{{ keep_signatures() }}",
) }}

with behaviors as (
    -- the filter stays here: DuckDB does not push it below the lateral unnest
    select * from {{ ref('stg_behaviors') }}
    {% if is_incremental() %}where day in {{ changed_keys() }}{% endif %}
)

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
from behaviors as b,
    lateral (
        select
            unnest(b.candidate_ids) as news_id,
            unnest(b.candidate_labels) as label,
            unnest(generate_series(1, len(b.candidate_ids))) as position
    ) as c
