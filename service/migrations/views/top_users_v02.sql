-- The 1,000 authors with the most followers, read from author_stats (maintained by every
-- populate), so that refreshing it costs the same whatever the number of stored tweets.
-- The API serves at most 100 of them; author_stats keeps every author.
CREATE MATERIALIZED VIEW top_users AS
SELECT a.user_id,
       a.username,
       a.followers::integer AS followers,  -- the type of users.followers_count, as in v01
       a.tweets
FROM author_stats AS a
-- The table's columns, not the output's: author_stats_rank_idx then yields the first 1,000
-- rows in order, without reading or sorting the rest.
ORDER BY a.followers DESC, a.username COLLATE "C", a.user_id
LIMIT 1000
WITH DATA;

-- REFRESH ... CONCURRENTLY needs a unique index on plain columns.
CREATE UNIQUE INDEX top_users_user_id_key ON top_users (user_id);
-- Serves ORDER BY followers DESC, username COLLATE "C" LIMIT n without a sort.
CREATE INDEX top_users_rank_idx ON top_users (followers DESC, username COLLATE "C");

COMMENT ON MATERIALIZED VIEW top_users IS
  'The 1,000 authors of stored tweets with the most followers (latest follower count seen), of the complete author_stats table; refreshed after every successful populate. Rank with ORDER BY followers DESC, username.';
COMMENT ON COLUMN top_users.user_id IS 'X user id of the author.';
COMMENT ON COLUMN top_users.username IS 'X handle, without the @.';
COMMENT ON COLUMN top_users.followers IS 'Follower count as last seen by a populate.';
COMMENT ON COLUMN top_users.tweets IS 'Number of stored tweets by this author, over all tags.';
