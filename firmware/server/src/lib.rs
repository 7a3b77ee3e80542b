//! XMPP sessions and routing: c2s, roster, presence, messages, disco, ping, version
