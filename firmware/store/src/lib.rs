//! Typed configuration and account store on sled: schema version, migrations, flush on commit
