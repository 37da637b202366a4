-- Typed, trimmed items. Category names are lower-cased so MIND and generic data agree.
select
    news_id,
    lower(trim(category)) as category,
    lower(trim(coalesce(subcategory, ''))) as subcategory,
    trim(title) as title,
    trim(coalesce(abstract, '')) as abstract,
    coalesce(url, '') as url,
    coalesce(title_entities, '[]') as title_entities,
    coalesce(abstract_entities, '[]') as abstract_entities,
    length(trim(title)) + length(trim(coalesce(abstract, ''))) as text_length
from {{ source('raw', 'news') }}
