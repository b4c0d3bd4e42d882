//! The cart's limit: a write past [`contract::CART_MAX_BYTES`] (or
//! [`contract::CART_MAX_ITEMS`]) is refused with 409 `cart_full` and a short
//! reason, the cart keeps what it had, and the session goes on; error
//! answers carry no internal text.

use contract::{CART_ITEM_MAX_BYTES, CART_MAX_BYTES, ErrorCode};
use e2e_tests::{InProcessStack, sign_in};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_cart_refuses_more_with_cart_full_and_keeps_what_it_had() {
    // option1: the handler is the same for every topology, and filling a
    // 256 KiB record 1,024 times through option4's stores takes a minute.
    let option = "option1";
    let stack = InProcessStack::start(option, 1).await;
    let browser = sign_in(&stack, 0, "carla").await;
    let base = stack.base(0);
    // Items of the longest size fill the bytes first: 1,024 of 256 bytes.
    let fill = CART_MAX_BYTES / CART_ITEM_MAX_BYTES;
    let item = |n: usize| format!("{n:0>width$}", width = CART_ITEM_MAX_BYTES);
    for n in 0..fill {
        let answer = browser.add_to_cart(&base, &item(n)).await.expect("answers");
        assert_eq!(
            answer.status,
            200,
            "{option}: item {n}: {:?}",
            answer.error()
        );
    }
    let refused = browser
        .add_to_cart(&base, &item(fill))
        .await
        .expect("answers");
    assert_eq!(refused.status, 409, "{option}");
    let error = refused.error().expect("an error body");
    assert_eq!(error.error, ErrorCode::CartFull, "{option}");
    assert!(
        error.detail.contains("items or"),
        "{option}: {}",
        error.detail
    );
    // A small item does not fit either: the bytes are spent.
    let small = browser.add_to_cart(&base, "x").await.expect("answers");
    assert_eq!(small.status, 409, "{option}");
    // Writing an item already there changes nothing and is no error.
    let again = browser.add_to_cart(&base, &item(3)).await.expect("answers");
    assert_eq!(again.status, 200, "{option}");
    let cart = browser
        .cart(&base)
        .await
        .expect("answers")
        .into_reply()
        .expect("the session goes on");
    assert_eq!(
        cart.items.len(),
        fill,
        "{option}: the cart kept what it had"
    );
    assert_eq!(cart.items[0], item(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_cart_body_gets_the_contract_error_not_the_frameworks_words() {
    let stack = InProcessStack::start("option1", 1).await;
    let browser = sign_in(&stack, 0, "dora").await;
    let base = stack.base(0);
    for body in [
        serde_json::json!({"thing": 1}),
        serde_json::json!({"item": 7}),
        serde_json::json!([1, 2]),
    ] {
        let page = browser
            .post_json(&format!("{base}/cart"), &body)
            .await
            .expect("answers");
        assert_eq!(page.status, 400, "{body}");
        let error: contract::ErrorReply = page.json().expect("the contract's error body");
        assert_eq!(error.error, ErrorCode::BadRequest);
        assert!(
            !error.detail.contains("serde") && !error.detail.contains("missing field"),
            "{}",
            error.detail
        );
    }
    let long = "y".repeat(CART_ITEM_MAX_BYTES + 1);
    let answer = browser.add_to_cart(&base, &long).await.expect("answers");
    assert_eq!(answer.status, 400);
}
