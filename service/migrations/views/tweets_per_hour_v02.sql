-- Stored tweets per UTC hour, read from hour_stats (maintained by every populate). Each tweet
-- counts once, whatever number of tags matched it.
CREATE MATERIALIZED VIEW tweets_per_hour AS
SELECT hour,
       tweets AS count
FROM hour_stats
WITH DATA;

CREATE UNIQUE INDEX tweets_per_hour_hour_key ON tweets_per_hour (hour);

COMMENT ON MATERIALIZED VIEW tweets_per_hour IS
  'Stored tweets per UTC hour of creation, each tweet once; hours without tweets are absent. Refreshed after every successful populate.';
COMMENT ON COLUMN tweets_per_hour.hour IS 'Start of the UTC hour (timestamptz).';
COMMENT ON COLUMN tweets_per_hour.count IS 'Tweets created within that hour.';
