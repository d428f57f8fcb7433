"""`tickets_title_words_query(q)`: the tsquery a search asks for, made in PostgreSQL.

Each word of `q` as the "simple" configuration finds words in titles (its own parser and
lower-casing, the same on both sides), quoted so that nothing in it is tsquery syntax,
as the start of a word (`:*`), all of them required (`&`); NULL when `q` has no words.
IMMUTABLE: called with a constant, the planner evaluates it once while planning, so a
search is one statement and the plan is chosen knowing the words.
"""

from django.db import migrations

FUNCTION = r"""
CREATE FUNCTION tickets_title_words_query(q text) RETURNS tsquery
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT to_tsquery('simple'::regconfig, NULLIF(array_to_string(ARRAY(
        SELECT '''' || replace(replace(word, '\', '\\'), '''', '''''') || ''':*'
        FROM unnest(tsvector_to_array(to_tsvector('simple'::regconfig, q))) AS word
    ), ' & '), ''))
$$
"""


class Migration(migrations.Migration):
    dependencies = [("tickets", "0006_search_index_without_pending_list")]

    operations = [
        migrations.RunSQL(FUNCTION, "DROP FUNCTION tickets_title_words_query(text)"),
    ]
