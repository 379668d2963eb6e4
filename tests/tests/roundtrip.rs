//! The AST printer round-trips: for every model and every case that parses,
//! `parse(print(ast))` equals `ast` up to spans, and printing is idempotent.

use nnc_frontend::{parse, print_file};

#[test]
fn every_file_round_trips_through_the_printer() {
    let mut checked = 0;
    for path in nnc_tests::models().into_iter().chain(nnc_tests::cases()) {
        let text = std::fs::read_to_string(&path).expect("readable");
        // Syntax-error cases do not parse; everything else must round-trip.
        let Ok(ast) = parse(&text) else { continue };
        let printed = print_file(&ast);
        let reparsed = parse(&printed).unwrap_or_else(|d| {
            panic!(
                "{}: printed text does not parse: {}\n{printed}",
                path.display(),
                d.message
            )
        });
        assert_eq!(
            reparsed.without_spans(),
            ast.without_spans(),
            "{}",
            path.display()
        );
        assert_eq!(
            print_file(&reparsed),
            printed,
            "{}: printing is not idempotent",
            path.display()
        );
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} files were checked");
}

#[test]
fn expressions_keep_their_structure() {
    let src = "block b(x, a: int, c: float = -(1.5 + 2) * 3) {\n    y = conv2d(x, out=(a - 1) - (a - 2), kernel=[a / 2, 2 * (a + 1)])\n    return y\n}\nmodel m {\n    input x: f32[1, 2, 8, 8]\n    y = b(x, a=4)\n    output y\n}\n";
    let ast = parse(src).expect("parses");
    let printed = print_file(&ast);
    assert!(printed.contains("out=a - 1 - (a - 2)"), "{printed}");
    assert!(printed.contains("c: float = -(1.5 + 2) * 3"), "{printed}");
    assert_eq!(
        parse(&printed).expect("reparses").without_spans(),
        ast.without_spans()
    );
}
