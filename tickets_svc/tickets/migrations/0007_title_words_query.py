"""`tickets_title_words_query(q)`: the tsquery a search asks for, made in PostgreSQL.

Each word of `q` as the "simple" configuration finds words in titles (its own parser and
lower-casing, the same on both sides), as the start of a word (`:*`), all of them
required (`&`); NULL when `q` has no words. Each word is quoted into tsquery's own syntax
and cast, not parsed again by to_tsquery, which would split some words a second time
(`part-1e2x`, a URL with a query string) so that a title was not found by its own words.
At most 16 words are used: the service refuses a `q` of more than 10, but its count
and this parser's can differ on rare characters, and each word is work for the index.
IMMUTABLE: called with a constant, the planner evaluates it once while planning, so a
search is one statement and the plan is chosen knowing the words. No backslash is
written in the body, which is parsed afresh in each session (standard_conforming_strings
could differ): chr(92) is one.
"""

from django.db import migrations

FUNCTION = """
CREATE FUNCTION tickets_title_words_query(q text) RETURNS tsquery
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT NULLIF(array_to_string(ARRAY(
        SELECT '''' || replace(replace(word, chr(92), chr(92) || chr(92)), '''', '''''')
            || ''':*'
        FROM unnest(tsvector_to_array(to_tsvector('simple'::regconfig, q))) AS word
        LIMIT 16
    ), ' & '), '')::tsquery
$$
"""


class Migration(migrations.Migration):
    dependencies = [("tickets", "0006_search_index_without_pending_list")]

    operations = [
        migrations.RunSQL(FUNCTION, "DROP FUNCTION tickets_title_words_query(text)"),
    ]
