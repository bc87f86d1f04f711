use tollgate_guest::prelude::*;

tollgate_guest::connection_function!(fail);

fn fail(_conn: &Connection) -> Result<Decision> {
    // A store that is not associated with the function: a function error.
    let store = Kvs::open("not-associated")?;
    Ok(Decision::allow_if(store.exists("x"), "unreachable"))
}
