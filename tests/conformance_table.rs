//! spec/CONFORMANCE.md embeds the statement ↔ case table the code generates, so the document
//! cannot drift from the cases; regenerate it with `refeng-conformance --statements`.

#[test]
fn conformance_md_embeds_the_current_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/spec/CONFORMANCE.md");
    let document = std::fs::read_to_string(path).expect("read spec/CONFORMANCE.md");
    let table = refeng::conformance::cli::statements_table();
    assert!(
        document.contains(&table),
        "spec/CONFORMANCE.md is stale: paste the output of `refeng-conformance --statements`"
    );
}
