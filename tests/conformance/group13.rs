//! Group 13, permessage-deflate parameters: the messages of group 12 on its JSON data, under
//! each of Autobahn's seven client offers. herald compresses with one 2^15 window for every
//! connection (one compressed frame serves every recipient of a push), so it declines an offer
//! of a smaller `server_max_window_bits` (RFC 7692 §7: a server MUST decline an offer it does
//! not support). Those cases (13.3, 13.5) check the refusal, and that the messages are then
//! echoed uncompressed; Autobahn would report them as unimplemented.

use super::client::*;
use super::group12::{data_sets, echo_case, AGREED, DEFAULT_OFFER, SIZES};

#[test]
fn autobahn_group_13() {
    let srv = server();
    let addr = srv.public_addr;
    let json = &data_sets()[0];
    let nct = format!("{DEFAULT_OFFER}; server_no_context_takeover");
    let with_15 = format!("{AGREED}; server_max_window_bits=15");
    // (client offers, herald's answer): Autobahn's (requestNoContextTakeover,
    // requestMaxWindowBits) pairs (false, 0), (true, 0), (false, 9), (false, 15), (true, 9),
    // (true, 15), and the three offers (true, 9), (true, 0), (false, 0) in order of preference.
    let params: [(String, Option<&str>); 7] = [
        (DEFAULT_OFFER.to_owned(), Some(AGREED)),
        (nct.clone(), Some(AGREED)),
        (format!("{DEFAULT_OFFER}; server_max_window_bits=9"), None),
        (
            format!("{DEFAULT_OFFER}; server_max_window_bits=15"),
            Some(&with_15),
        ),
        (format!("{nct}; server_max_window_bits=9"), None),
        (format!("{nct}; server_max_window_bits=15"), Some(&with_15)),
        (
            format!("{nct}; server_max_window_bits=9, {nct}, {DEFAULT_OFFER}"),
            Some(AGREED),
        ),
    ];
    let mut t = Tally::new("group 13");
    for (j, (offer, agreed)) in params.iter().enumerate() {
        for (i, size) in SIZES.into_iter().enumerate() {
            t.case(format!("13.{}.{}", j + 1, i + 1), || {
                echo_case(addr, offer, *agreed, json, size)
            });
        }
    }
    t.finish();
}
