//! Bytes from BIRD's control socket: the reply decoder and the readers of
//! `show protocols all` / `show bfd sessions` must never panic, whatever
//! arrives, and every line of a decoded reply carries a four-digit code.
#![no_main]

use herald::bird::reply::ReplyDecoder;
use herald::bird::show;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut decoder = ReplyDecoder::new();
    // Feed in two parts, so a reply split across reads is exercised too.
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    for part in [&data[..split], &data[split..]] {
        if decoder.push(part).is_err() {
            return;
        }
        while let Ok(Some(reply)) = decoder.next_reply() {
            assert!(reply.lines.iter().all(|line| line.code <= 9999));
            let protocols = show::protocols(&reply);
            let sessions = show::bfd_sessions(&reply);
            let _ = show::peer_statuses(&protocols, &|_| None);
            let _ = show::bfd_session_statuses(&sessions, &|_| None);
        }
    }
});
