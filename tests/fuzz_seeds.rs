//! The fuzz targets' checks (`fuzz/fuzz_targets/check/`), run once over each target's seed
//! corpus (`fuzz/seeds/<target>/`): every seed and every input a fuzzing run found worth
//! keeping as a regression (add it to the seeds) passes on every `cargo test`, without
//! libFuzzer. Coverage-guided runs: `fuzz/run.sh SECONDS [TARGET...]`.

use std::path::Path;

macro_rules! targets {
    ($($name:ident),*) => {
        $(mod $name {
            include!(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/fuzz_targets/check/", stringify!($name), ".rs"));
        })*

        #[test]
        fn every_seed_of_every_fuzz_target_passes_its_check() {
            let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
            $(
                let dir = seeds.join(stringify!($name));
                let mut n = 0;
                for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
                    let path = entry.unwrap().path();
                    let data = std::fs::read(&path).unwrap();
                    $name::check(&data);
                    n += 1;
                }
                assert!(n > 0, "no seeds in {}", dir.display());
            )*
        }
    };
}

targets!(
    parse_expr,
    push_json,
    push_proto,
    line_format,
    config,
    segment,
    wal
);
