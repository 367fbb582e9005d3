#!/usr/bin/env python3
"""Per-(lower(domain), UTC minute) SUM(origin bytes) of one log format with DuckDB, by the same
origin rule as srctraffic-batch (FORMATS.md); writes CSV domain,minute,sum_bytes.
usage: q_formats_duckdb.py FORMAT INPUT_GLOB OUT_CSV"""
import sys
import duckdb

fmt, src, out = sys.argv[1], sys.argv[2], sys.argv[3]
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")

# Whole lines, nothing split or unquoted by the reader.
LINES = (f"read_csv('{src}', header = false, delim = chr(31), quote = '', escape = '', "
         f"columns = {{'l': 'VARCHAR'}}, auto_detect = false)")
# China time to a UTC minute.
def local_minute(expr):
    return f"date_trunc('minute', strptime({expr}, '%d/%b/%Y:%H:%M:%S') - INTERVAL 8 HOUR)"

QUERIES = {
    # Two directive blocks of different columns: told apart by their field count.
    "cloudfront": f"""
      WITH f AS (SELECT string_split(l, chr(9)) AS p FROM {LINES} WHERE l NOT LIKE '#%'),
      r AS (
        SELECT p[1] || ' ' || p[2] AS t,
               CASE WHEN len(p) = 33 THEN p[16] ELSE p[6] END AS xhost,
               CASE WHEN len(p) = 33 THEN p[7] ELSE p[7] END AS cshost,
               CASE WHEN len(p) = 33 THEN p[4] ELSE p[8] END AS b,
               CASE WHEN len(p) = 33 THEN p[14] ELSE p[3] END AS res,
               CASE WHEN len(p) = 33 THEN p[29] ELSE p[9] END AS det
        FROM f)
      SELECT lower(replace(CASE WHEN xhost IN ('-', '') THEN cshost ELSE xhost END, '%2E', '.')) AS domain,
             date_trunc('minute', t::TIMESTAMP) AS minute,
             sum(CASE WHEN b = '-' THEN 0 ELSE b::BIGINT END) AS sum_bytes
      FROM r WHERE res = 'Miss' AND det <> 'OriginShieldHit' GROUP BY ALL""",
    "alibaba": f"""
      WITH m AS (SELECT regexp_extract(l,
          '^\\[([^\\]]+) \\+0800\\] \\S+ \\S+ \\S+ "(?:[^"\\\\]|\\\\.)*" "\\S+ \\w+://([^/?# ]+)[^"]*" \\d+ \\d+ (\\d+) (\\w+) ',
          ['t', 'host', 'bytes', 'hit']) AS x FROM {LINES})
      SELECT lower(x.host) AS domain, {local_minute('x.t')} AS minute, sum(x.bytes::BIGINT) AS sum_bytes
      FROM m WHERE x.hit = 'MISS' GROUP BY ALL""",
    "cloudflare": f"""
      WITH j AS (SELECT * FROM read_ndjson('{src}', columns = {{
          'ClientRequestHost': 'VARCHAR', 'EdgeStartTimestamp': 'VARCHAR',
          'CacheCacheStatus': 'VARCHAR', 'OriginResponseStatus': 'BIGINT',
          'OriginResponseBytes': 'BIGINT', 'CacheResponseBytes': 'BIGINT'}}))
      SELECT lower(ClientRequestHost) AS domain,
             CASE WHEN EdgeStartTimestamp LIKE '%T%' THEN date_trunc('minute', EdgeStartTimestamp::TIMESTAMPTZ)
                  WHEN length(EdgeStartTimestamp) = 19 THEN date_trunc('minute', to_timestamp(EdgeStartTimestamp::HUGEINT // 1000000000))
                  ELSE date_trunc('minute', to_timestamp(EdgeStartTimestamp::BIGINT)) END AS minute,
             sum(coalesce(OriginResponseBytes, CacheResponseBytes)) AS sum_bytes
      FROM j WHERE OriginResponseStatus > 0 GROUP BY ALL""",
    "jsonl": f"""
      WITH j AS (SELECT * FROM read_ndjson('{src}', columns = {{
          'ts': 'VARCHAR', 'host': 'VARCHAR', 'bytes': 'BIGINT'}}))
      SELECT lower(host) AS domain,
             CASE WHEN ts LIKE '%T%' THEN date_trunc('minute', ts::TIMESTAMPTZ)
                  ELSE date_trunc('minute', to_timestamp(floor(ts::DOUBLE)::BIGINT)) END AS minute,
             sum(bytes) AS sum_bytes
      FROM j GROUP BY ALL""",
    "nginx": f"""
      WITH m AS (SELECT regexp_extract(l,
          '^\\S+ - \\[([^\\]]+) \\+0800\\] "[^"]*" \\d+ (\\S+) \\S+ \\S+ (-|\\d+(?:(?:, | : )\\d+)*) (-|\\d+(?:(?:, | : )\\d+)*) "',
          ['t', 'host', 'st', 'up']) AS x FROM {LINES})
      SELECT lower(x.host) AS domain, {local_minute('x.t')} AS minute,
             sum(list_sum(list_transform(string_split(x.up, ', '), lambda s: s::BIGINT))) AS sum_bytes
      FROM m WHERE x.up <> '-' GROUP BY ALL""",
}
con.execute(f"COPY ({QUERIES[fmt]}) TO '{out}' (FORMAT csv, HEADER true)")
