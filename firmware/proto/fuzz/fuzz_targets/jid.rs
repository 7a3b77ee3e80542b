//! Arbitrary strings as JIDs. Properties: no panic; a parsed JID is normalized (printing
//! and parsing it again gives it back), its parts are within RFC 7622's limits, and
//! rebuilding it from its parts gives it back.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sb_proto::Jid;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(jid) = Jid::parse(text) else {
        return;
    };
    let printed = jid.to_string();
    assert_eq!(Jid::parse(&printed).as_ref(), Ok(&jid), "{printed:?}");
    for part in [jid.node(), Some(jid.domain()), jid.resource()].into_iter().flatten() {
        assert!(!part.is_empty() && part.len() <= 1023);
    }
    assert_eq!(
        Jid::from_parts(jid.node(), jid.domain(), jid.resource()).as_ref(),
        Ok(&jid)
    );
    if let Some(resource) = jid.resource() {
        assert_eq!(jid.to_bare().with_resource(resource).as_ref(), Ok(&jid));
    }
});
