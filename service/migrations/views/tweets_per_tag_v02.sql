-- Stored tweets per searched tag, language and country, read from tag_stats (maintained by
-- every populate). A tweet found by two tags counts under both.
CREATE MATERIALIZED VIEW tweets_per_tag AS
SELECT tag,
       language,
       country,
       tweets AS count
FROM tag_stats
WITH DATA;

-- country is NULL for tweets without a place; NULLS NOT DISTINCT (PostgreSQL 15+) keeps the
-- key unique, which REFRESH ... CONCURRENTLY requires.
CREATE UNIQUE INDEX tweets_per_tag_key ON tweets_per_tag (tag, language, country) NULLS NOT DISTINCT;

COMMENT ON MATERIALIZED VIEW tweets_per_tag IS
  'Stored tweets per searched hashtag, language and country of the tagged place. Refreshed after every successful populate.';
COMMENT ON COLUMN tweets_per_tag.tag IS 'The searched hashtag, lower case, with its #.';
COMMENT ON COLUMN tweets_per_tag.language IS 'BCP 47 language X detected for the tweet; und when undetermined.';
COMMENT ON COLUMN tweets_per_tag.country IS 'ISO 3166-1 alpha-2 code of the tweet''s place; NULL when the tweet has no place (most tweets).';
COMMENT ON COLUMN tweets_per_tag.count IS 'Tweets with this tag, language and country.';
