-- Time-based train / validation / test split of labelled impressions.
--
-- Explicit boundaries (vars validation_start, test_start) win. Otherwise ("auto"):
--   * a MIND dev folder that holds the newest data is the test split (as MIND is used);
--   * else the newest `test_days` labelled days are test;
--   * the `validation_days` labelled days before the test split are validation;
--   * everything earlier is train. Unlabelled impressions (MIND test folder) are "unlabeled".
-- Validation is always later than train and test later than validation.
--
-- When the automatic rule would leave no train day (one train day and one dev day, as in many
-- MIND-format exports), a seeded hash of the user id holds out `holdout_share` of the users of
-- the days before the test split as validation and keeps the rest as train (`split_rule` =
-- 'user_holdout' instead of 'time'). Explicit boundaries never fall back: the check
-- `splits_are_usable` names the days instead.
{% set validation_start = var('validation_start') %}
{% set test_start = var('test_start') %}
{% set holdout_share = var('holdout_share') | float %}
{% set holdout_buckets = (holdout_share * 10000) | round | int %}

with behaviors as (
    select impression_id, day, source_split, user_id, is_labeled from {{ ref('stg_behaviors') }}
),

labeled_days as (
    select distinct day from behaviors where is_labeled
),

dev_is_newest as (
    select
        count(*) filter (where source_split = 'dev') > 0
        and coalesce(min(day) filter (where source_split = 'dev'), date '9999-12-31')
            > coalesce(max(day) filter (where source_split <> 'dev'), date '0001-01-01')
        as value
    from behaviors
    where is_labeled
),

test_start_day as (
    select
        {% if test_start %}
            cast('{{ test_start }}' as date)
        {% else %}
            case
                when (select value from dev_is_newest)
                    then (select min(day) from behaviors where source_split = 'dev' and is_labeled)
                else (
                    select min(day) from (
                        select day from labeled_days order by day desc limit {{ var('test_days') }}
                    )
                )
            end
        {% endif %} as day
),

validation_start_day as (
    select
        {% if validation_start %}
            cast('{{ validation_start }}' as date)
        {% else %}
            (
                select min(day) from (
                    select day from labeled_days
                    where day < (select day from test_start_day)
                    order by day desc
                    limit {{ var('validation_days') }}
                )
            )
        {% endif %} as day
),

user_holdout as (
    select
        {% if validation_start or holdout_buckets <= 0 %}
            false
        {% else %}
            (select day from validation_start_day) is not null
            and not exists (
                select 1 from labeled_days where day < (select day from validation_start_day)
            )
        {% endif %} as value
)

select
    b.impression_id,
    b.day,
    case
        when not b.is_labeled then 'unlabeled'
        when b.day >= (select day from test_start_day) then 'test'
        when (select value from user_holdout) then
            case
                when md5_number(b.user_id || ':{{ var("holdout_seed") }}') % 10000
                    < {{ holdout_buckets }}
                    then 'validation'
                else 'train'
            end
        when b.day >= (select day from validation_start_day) then 'validation'
        else 'train'
    end as split,
    case when (select value from user_holdout) then 'user_holdout' else 'time' end as split_rule
from behaviors as b
