//! Recipes (`dlm train`, `dlm eval`, `dlm sample`): every config of `configs/` reads and checks;
//! bad keys and values are errors naming them; each family trains, resumes, scores and samples
//! from its run folder.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use dlm::core::data::{PairsTask, PairsTaskConfig};
use dlm::recipe::{Family, Recipe, RecipeError, Run, exact_reference, train};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dlm-recipe-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn configs(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            configs(&path, found);
        } else if path.extension().is_some_and(|e| e == "toml") {
            found.push(path);
        }
    }
}

#[test]
fn every_config_reads_and_checks_against_its_data() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    configs(&root.join("configs"), &mut found);
    assert!(found.len() >= 10, "{found:?}");
    // Paths in the configs are from the repository root, where cargo runs this test.
    for path in found {
        let recipe = Recipe::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let missing = recipe.data.files().iter().any(|f| !f.exists());
        if missing {
            // A corpus of scripts/fetch-data.sh that this checkout has not fetched.
            continue;
        }
        let data = recipe.data.load().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        recipe.validate(&data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

const TINY: &str = r#"
[data]
source = "markov"
seq_len = 16
train_sequences = 64
valid_sequences = 8
test_sequences = 24

[model]
d_model = 32
n_heads = 2
n_layers = 1

[objective]
family = "mdlm"

[train]
steps = 3
batch_size = 8

[run]
eval_every = 2
checkpoint_every = 2
test_batch_size = 4
time_samples = 2
"#;

fn tiny(objective: &str, out: &Path) -> (Recipe, String) {
    let text = TINY.replace("family = \"mdlm\"", objective);
    let mut recipe = Recipe::parse(&text, Path::new("tiny.toml")).unwrap();
    recipe.run.out = Some(out.to_path_buf());
    (recipe, text)
}

fn parse_error(text: &str) -> String {
    Recipe::parse(text, Path::new("bad.toml")).unwrap_err().to_string()
}

#[test]
fn unknown_keys_and_bad_values_are_named() {
    let err = parse_error(&TINY.replace("batch_size = 8", "batch_size = 8\nstepz = 3"));
    assert!(err.contains("stepz") && err.contains("bad.toml"), "{err}");
    let err = parse_error(&TINY.replace("family = \"mdlm\"", "family = \"sedd\""));
    assert!(err.contains("sedd"), "{err}");
    let err = parse_error(&TINY.replace("family = \"mdlm\"", "family = \"ar\"\nblock_size = 4"));
    assert!(err.contains("block_size"), "a key AR does not take is refused: {err}");
    let err = parse_error(&TINY.replace("family = \"mdlm\"", "family = \"d3pm\""));
    assert!(err.contains("transition"), "a missing key is named: {err}");
    let err = parse_error(
        &TINY.replace("[objective]", "[objective]\nschedule = { kind = \"cosine\", s = -1.0 }"),
    );
    assert!(err.contains("cosine") || err.contains("`s`"), "{err}");

    let data_of = |text: &str| {
        let recipe = Recipe::parse(text, Path::new("bad.toml")).unwrap();
        let data = recipe.data.load();
        (recipe, data)
    };
    let (_, data) = data_of(&TINY.replace("seq_len = 16", "seq_len = 0"));
    assert!(data.unwrap_err().to_string().contains("`data.seq_len` = 0"));
    let (_, data) = data_of(&TINY.replace("test_sequences = 24", "test_sequences = 0"));
    assert!(data.unwrap_err().to_string().contains("data.test_sequences"));
    for (from, to, named) in [
        ("eval_every = 2", "eval_every = 0", "run.eval_every"),
        ("steps = 3", "steps = 0", "steps"),
        ("n_heads = 2", "n_heads = 3", "n_heads"),
        ("family = \"mdlm\"", "family = \"bd3lm\"\nblock_size = 0", "block_size"),
        ("family = \"mdlm\"", "family = \"bd3lm\"\nblock_size = 5", "objective.block_size"),
        ("family = \"mdlm\"", "family = \"mdlm\"\nt_min = 1.5", "t_min"),
        (
            "family = \"mdlm\"",
            "family = \"d3pm\"\ntransition = \"uniform\"\nhybrid_lambda = -1.0",
            "hybrid_lambda",
        ),
    ] {
        let (recipe, data) = data_of(&TINY.replace(from, to));
        let err = recipe.validate(&data.unwrap()).unwrap_err().to_string();
        assert!(err.contains(named), "{to}: {err}");
    }
    // An AR model needs a position to predict from.
    let one =
        TINY.replace("family = \"mdlm\"", "family = \"ar\"").replace("seq_len = 16", "seq_len = 1");
    let (recipe, data) = data_of(&one);
    let err = recipe.validate(&data.unwrap()).unwrap_err().to_string();
    assert!(err.contains("`data.seq_len` = 1"), "{err}");
    let missing = Recipe::load(Path::new("no/such/recipe.toml")).unwrap_err();
    assert!(matches!(missing, RecipeError::Io { .. }), "{missing}");
    let device = Device::flex();
    let err = Run::load(Path::new("no/such/run"), &device).err().unwrap();
    assert!(matches!(err, RecipeError::NoRun { .. }), "{err}");
}

#[test]
fn every_family_trains_resumes_scores_and_samples_from_its_folder() {
    let device = Device::flex();
    for (name, objective) in [
        ("ar", "family = \"ar\""),
        ("mdlm", "family = \"mdlm\""),
        ("d3pm", "family = \"d3pm\"\ntransition = \"absorbing\"\nsteps = 10"),
        ("bd3lm", "family = \"bd3lm\"\nblock_size = 4"),
    ] {
        let out = scratch(name);
        let (recipe, text) = tiny(objective, &out);
        let trained = train(&recipe, &text, &device, false).unwrap();
        let nats = trained.test.report.nats_per_token;
        assert!(nats.is_finite() && nats > 0.0, "{name}: {nats}");
        for file in ["recipe.toml", "model.ckpt", "metrics.csv", "loss.svg", "result.json"] {
            assert!(out.join(file).is_file(), "{name}: {file}");
        }
        // The folder reads back: the same model scores the same figure.
        let run = Run::load(&out, &device).unwrap();
        let again = run.test(false).unwrap().report.nats_per_token;
        assert!((again - nats).abs() < 1e-9, "{name}: {again} after loading vs {nats}");
        let (rows, nfe) =
            run.objective.sample(&run.model, &run.data, 2, 4, 1.0, 0, &mut ()).unwrap();
        assert_eq!(rows.len(), 2);
        let vocab = run.data.vocab_size;
        let valid = |row: &Vec<u32>| row.len() == 16 && row.iter().all(|&t| (t as usize) < vocab);
        assert!(rows.iter().all(valid), "{name}: {rows:?}");
        assert!(nfe > 0, "{name}");
        // Started again, the finished run trains no further and scores the same.
        let resumed = train(&recipe, &text, &device, false).unwrap();
        assert!((resumed.test.report.nats_per_token - nats).abs() < 1e-9, "{name}");
        // Another recipe in the same folder is refused before anything is overwritten.
        let (other, other_text) = tiny(objective, &out);
        let other_text = other_text.replace("steps = 3", "steps = 4");
        let other = Recipe { train: dlm::recipe::TrainSpec { steps: 4, ..other.train }, ..other };
        let err = train(&other, &other_text, &device, false).unwrap_err();
        assert!(matches!(err, RecipeError::OtherRun { .. }), "{name}: {err}");
        assert_eq!(std::fs::read_to_string(out.join("recipe.toml")).unwrap(), text);
        std::fs::remove_dir_all(&out).unwrap();
    }
}

#[test]
fn the_chunked_test_score_pools_the_chunks_over_their_tokens() {
    // The AR figure is an exact NLL (no noise): scoring the test split in chunks must give the
    // figure of one pass over it. 26 sequences in batches of 4: six chunks of 4, one of 2.
    let device = Device::flex();
    let out = scratch("pooling");
    let text = TINY.replace("family = \"mdlm\"", "family = \"ar\"").replace("= 24", "= 26");
    let mut recipe = Recipe::parse(&text, Path::new("tiny.toml")).unwrap();
    recipe.run.out = Some(out.clone());
    let trained = train(&recipe, &text, &device, false).unwrap();
    let run = Run::load(&out, &device).unwrap();
    let whole = run.objective.bound(&run.model, &run.data.test, 26, 1, 0).unwrap();
    assert_eq!(whole.report.tokens, 26 * 15);
    assert_eq!(trained.test.report.tokens, whole.report.tokens);
    let gap = (trained.test.report.nats_per_token - whole.report.nats_per_token).abs();
    assert!(
        gap < 1e-6,
        "chunks {} vs one pass {}",
        trained.test.report.nats_per_token,
        whole.report.nats_per_token
    );
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn the_dlm_binary_trains_evaluates_and_samples() {
    let out = scratch("cli");
    let recipe = out.join("tiny.toml");
    let text =
        TINY.replace("[run]", &format!("[run]\nout = {:?}", out.join("run").display().to_string()));
    std::fs::write(&recipe, text).unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_dlm")).args(args).output().unwrap()
    };
    let trained = run(&["train", recipe.to_str().unwrap()]);
    assert!(trained.status.success(), "{}", String::from_utf8_lossy(&trained.stderr));
    assert!(String::from_utf8_lossy(&trained.stdout).contains("nats/token (NELBO)"));
    let folder = out.join("run");
    let folder = folder.to_str().unwrap();
    let evaluated = run(&["eval", folder]);
    assert!(evaluated.status.success(), "{}", String::from_utf8_lossy(&evaluated.stderr));
    let report = String::from_utf8_lossy(&evaluated.stdout).into_owned();
    assert!(report.contains("NELBO") && report.contains("exact entropy of the source"), "{report}");
    let sampled = run(&["sample", folder, "--rows", "3", "--steps", "4"]);
    assert!(sampled.status.success(), "{}", String::from_utf8_lossy(&sampled.stderr));
    assert_eq!(String::from_utf8_lossy(&sampled.stdout).lines().count(), 3);
    let bad = run(&["train", out.join("missing.toml").to_str().unwrap()]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("missing.toml"));
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn the_pairs_and_words_sources_draw_their_tasks_with_exact_references() {
    // Pairs: ln 48 per phrase of two tokens; words: ln 16 per word of four, the first token of
    // a word fixing it. AR is compared over positions 2..L, a NELBO over the whole sequence.
    let pairs = TINY.replace("source = \"markov\"", "source = \"pairs\"");
    let recipe = Recipe::parse(&pairs, Path::new("pairs.toml")).unwrap();
    let data = recipe.data.load().unwrap();
    recipe.validate(&data).unwrap();
    let task = PairsTask::new(PairsTaskConfig { n_symbols: 32, n_pairs: 48, seed: 0 }).unwrap();
    assert_eq!(data.vocab_size, task.vocab_size());
    assert!(data.train.sequence(0).chunks(2).all(|p| task.pairs().contains(&(p[0], p[1]))));
    let nelbo = exact_reference(&recipe.objective, &data).unwrap();
    assert!((nelbo - 48f64.ln() / 2.0).abs() < 1e-12, "{nelbo}");
    let ar = exact_reference(&Family::Ar {}, &data).unwrap();
    let first = task.sequence_entropy(1);
    assert!((ar - (8.0 * 48f64.ln() - first) / 15.0).abs() < 1e-12, "{ar}");

    let words = TINY.replace("source = \"markov\"", "source = \"words\"\nword_len = 2");
    let recipe = Recipe::parse(&words, Path::new("words.toml")).unwrap();
    let data = recipe.data.load().unwrap();
    let nelbo = exact_reference(&recipe.objective, &data).unwrap();
    assert!((nelbo - 16f64.ln() / 2.0).abs() < 1e-12, "{nelbo}");
    let ar = exact_reference(&Family::Ar {}, &data).unwrap();
    assert!((ar - 7.0 * 16f64.ln() / 15.0).abs() < 1e-12, "{ar}");
    let err = parse_error(&TINY.replace("source = \"markov\"", "source = \"pairs\"\nn_words = 3"));
    assert!(err.contains("n_words"), "{err}");
}
