-- Stored tweets per UTC hour. Each tweet counts once, whatever number of tags matched it.
CREATE MATERIALIZED VIEW tweets_per_hour AS
SELECT date_trunc('hour', created_at, 'UTC') AS hour,
       count(*)                               AS count
FROM tweets
GROUP BY 1
WITH DATA;

CREATE UNIQUE INDEX tweets_per_hour_hour_key ON tweets_per_hour (hour);

COMMENT ON MATERIALIZED VIEW tweets_per_hour IS
  'Stored tweets per UTC hour of creation, each tweet once; hours without tweets are absent. Refreshed after every successful populate.';
COMMENT ON COLUMN tweets_per_hour.hour IS 'Start of the UTC hour (timestamptz).';
COMMENT ON COLUMN tweets_per_hour.count IS 'Tweets created within that hour.';
