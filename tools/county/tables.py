"""The county's own tables beside the events (cases, follow-ups, county
ratings): SQL written with `?` and run with the store's placeholder, in the
store's transactions (a write: one transaction that commits; a read: one
snapshot). Ingest keeps its own SQL in store.py."""


def q(store, sql):
    return sql.replace("?", store.placeholder)


def write(store):
    return store._connection()


def read(store):
    return store._reading()


def rows(db, store, sql, args=()):
    return db.execute(q(store, sql), args).fetchall()
