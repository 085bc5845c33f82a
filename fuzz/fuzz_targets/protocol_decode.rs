//! Raw bytes into the decoders of every migration protocol message, as a host receives them
//! from a peer (after the secure channel, so from a holder of the cluster key, which is still
//! not a reason to trust the bytes).
//!
//! Every byte string must give a value or an error, never a panic or an allocation the input
//! does not justify (run with `-malloc_limit_mb`); a decoded value must encode and decode to
//! itself.
#![no_main]

use cosmic::transport::protocol::{
    Decision, OfferAnswer, PrepareAnswer, Request, Resolution, StartAnswer, Whereabouts,
};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

fn round_trip<M: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(message) = postcard::from_bytes::<M>(data) {
        let bytes = postcard::to_stdvec(&message).expect("a decoded message encodes");
        let again: M = postcard::from_bytes(&bytes).expect("an encoded message decodes");
        assert_eq!(again, message);
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<Request>(data);
    round_trip::<OfferAnswer>(data);
    round_trip::<PrepareAnswer>(data);
    round_trip::<Decision>(data);
    round_trip::<StartAnswer>(data);
    round_trip::<Resolution>(data);
    round_trip::<Whereabouts>(data);
});
