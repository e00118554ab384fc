use super::*;

/// RFC 9001 A.1: the client's keys for the connection id 8394c8f03e515708.
#[test]
fn keys_are_the_rfcs() {
    let dcid = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];
    let keys = Keys::client(&dcid).unwrap();
    assert_eq!(
        keys.iv,
        [0xfa, 0x04, 0x4b, 0x2f, 0x42, 0xa3, 0xfd, 0x3b, 0x46, 0xfb, 0x25, 0x5c]
    );
    // The header protection key, by its output on RFC 9001 A.2's sample.
    let sample = [
        0xd1, 0xb1, 0xc9, 0x8d, 0xd7, 0x68, 0x9f, 0xb8, 0xec, 0x11, 0xd2, 0x42, 0xb1, 0x23, 0xdc, 0x9b,
    ];
    let mut mask = aes::Block::from(sample);
    keys.hp.encrypt_block(&mut mask);
    assert_eq!(mask[..5], [0x43, 0x7b, 0x9a, 0xec, 0x36]);
}

#[test]
fn varints_and_crypto_frames() {
    let mut r = Reader(&[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c, 0x25], 0);
    assert_eq!(r.varint(), Some(151_288_809_941_952_652));
    // Two CRYPTO frames out of order with padding between: put back in order.
    let frames = [&[0x06, 0x03, 0x02][..], b"lo", &[0x00, 0x00, 0x06, 0x00, 0x03], b"hel"].concat();
    assert_eq!(crypto_at_start(&frames).as_deref(), Some(&b"hello"[..]));
    assert_eq!(
        crypto_at_start(&[0x06, 0x05, 0x02, b'x', b'y']),
        None,
        "nothing from offset 0"
    );
    assert_eq!(crypto_at_start(&[0x1f]), None, "a frame an Initial cannot carry");
}
