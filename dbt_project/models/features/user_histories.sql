-- Each user's click history in time order, as of their newest impression: the history the
-- source provided (MIND: clicks before the logging period) followed by the clicks observed in
-- labelled impressions, de-duplicated, capped to the `history_cap` most recent clicks.
-- Incremental by user (macros/changed_keys.sql): a build rebuilds the users whose impressions
-- changed since the last one (and every user when `history_cap` changes) and keeps the others.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook="{{ record_changed_keys('user_id', ['impression_id', 'time', 'day', 'history', 'candidate_ids', 'candidate_labels', var('history_cap')]) }}",
    post_hook="{{ keep_signatures() }}",
) }}

with behaviors as (
    select * from {{ ref('stg_behaviors') }}
    {% if is_incremental() %}where user_id in {{ changed_keys() }}{% endif %}
),

latest_provided as (
    select user_id, history
    from behaviors
    qualify row_number() over (partition by user_id order by time desc, impression_id desc) = 1
),

provided as (
    select
        p.user_id,
        h.news_id,
        -- provided history predates every logged click: order it before them
        timestamp '0001-01-01' as clicked_at,
        h.ordinal
    from latest_provided as p,
        lateral (
            select
                unnest(p.history) as news_id,
                unnest(generate_series(1, len(p.history))) as ordinal
        ) as h
),

logged as (
    select user_id, news_id, time as clicked_at, position as ordinal
    from {{ ref('impressions') }}
    where label = 1
    {% if is_incremental() %}and user_id in {{ changed_keys() }}{% endif %}
),

clicks as (
    select user_id, news_id, clicked_at, ordinal from provided
    union all
    select user_id, news_id, clicked_at, ordinal from logged
),

deduplicated as (
    -- keep the most recent click of an item
    select *
    from clicks
    qualify row_number() over (
        partition by user_id, news_id order by clicked_at desc, ordinal desc
    ) = 1
),

capped as (
    -- recency 1 = the most recent click; news_id breaks exact ties (two impressions of a user
    -- logged in the same second), so the order never depends on how the rows were read
    select
        *,
        row_number() over (
            partition by user_id order by clicked_at desc, ordinal desc, news_id desc
        ) as recency
    from deduplicated
    qualify recency <= {{ var('history_cap') }}
),

users as (
    select
        user_id,
        count(*) as n_impressions,
        min(time) as first_seen,
        max(time) as last_seen
    from behaviors
    group by user_id
)

-- The history, oldest first: (recency, id) pairs sorted within each list rather than an
-- ordered aggregate. At MIND-large size (767k users, 17M capped clicks) DuckDB's
-- list(... order by ...) ran out of its 18.6 GiB memory limit; this takes 2.9 GB.
select
    u.user_id,
    coalesce(
        list_transform(
            list_sort(
                list(struct_pack(recency := c.recency, news_id := c.news_id))
                    filter (where c.news_id is not null),
                'DESC'
            ),
            pair -> pair.news_id
        ),
        []::varchar[]
    ) as history,
    count(c.news_id) as history_length,
    u.n_impressions,
    u.first_seen,
    u.last_seen
from users as u
left join capped as c on c.user_id = u.user_id
group by u.user_id, u.n_impressions, u.first_seen, u.last_seen
