-- Authors of stored tweets with their latest follower count. The API reads the top N of it.
CREATE MATERIALIZED VIEW top_users AS
SELECT u.id              AS user_id,
       u.username        AS username,
       u.followers_count AS followers,
       a.tweets          AS tweets
FROM users AS u
JOIN (SELECT author_id, count(*) AS tweets FROM tweets GROUP BY author_id) AS a
  ON a.author_id = u.id
WITH DATA;

-- REFRESH ... CONCURRENTLY needs a unique index on plain columns.
CREATE UNIQUE INDEX top_users_user_id_key ON top_users (user_id);
-- Serves ORDER BY followers DESC, username COLLATE "C" LIMIT n without a sort.
CREATE INDEX top_users_rank_idx ON top_users (followers DESC, username COLLATE "C");

COMMENT ON MATERIALIZED VIEW top_users IS
  'Authors of the stored tweets with their latest follower count; refreshed after every successful populate. Rank with ORDER BY followers DESC, username.';
COMMENT ON COLUMN top_users.user_id IS 'X user id of the author.';
COMMENT ON COLUMN top_users.username IS 'X handle, without the @.';
COMMENT ON COLUMN top_users.followers IS 'Follower count as last seen by a populate.';
COMMENT ON COLUMN top_users.tweets IS 'Number of stored tweets by this author, over all tags.';
