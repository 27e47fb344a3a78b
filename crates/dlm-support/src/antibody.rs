//! Antibody sequences for the AntiBERTy example and bench: public heavy-chain variable
//! domains, their CDR-H3 loops, and AntiBERTy's input format.

use dlm_core::tokenizer::HfTokenizer;

/// Heavy-chain variable domains (VH) of therapeutic antibodies, as published with their INN.
pub const HEAVY_CHAINS: &[(&str, &str)] = &[
    (
        "trastuzumab",
        "EVQLVESGGGLVQPGGSLRLSCAASGFNIKDTYIHWVRQAPGKGLEWVARIYPTNGYTRYADSVKGRFTISADTSKNTAYLQMNSLRAEDTAVYYCSRWGGDGFYAMDYWGQGTLVTVSS",
    ),
    (
        "pembrolizumab",
        "QVQLVQSGVEVKKPGASVKVSCKASGYTFTNYYMYWVRQAPGQGLEWMGGINPSNGGTNFNEKFKNRVTLTTDSSTTTAYMELKSLQFDDTAVYYCARRDYRFDMGFDYWGQGTTVTVSS",
    ),
    (
        "adalimumab",
        "EVQLVESGGGLVQPGRSLRLSCAASGFTFDDYAMHWVRQAPGKGLEWVSAITWNSGHIDYADSVEGRFTISRDNAKNSLYLQMNSLRAEDTAVYYCAKVSYLSTASSLDYWGQGTLVTVSS",
    ),
    (
        "nivolumab",
        "QVQLVESGGGVVQPGRSLRLDCKASGITFSNSGMHWVRQAPGKGLEWVAVIWYDGSKRYYADSVKGRFTISRDNSKNTLFLQMNSLRAEDTAVYYCATNDDYWGQGTLVTVSS",
    ),
];

/// The CDR-H3 loop as IMGT delimits it: the residues after the conserved Cys 104 up to, not
/// including, the Trp 118 of the `WGxG` motif. Returns the residue range.
pub fn cdr_h3(sequence: &str) -> Option<std::ops::Range<usize>> {
    let bytes = sequence.as_bytes();
    let trp = (0..bytes.len().saturating_sub(3))
        .find(|&i| bytes[i] == b'W' && bytes[i + 1] == b'G' && bytes[i + 3] == b'G')?;
    let cys = bytes[..trp].iter().rposition(|&b| b == b'C')?;
    Some(cys + 1..trp)
}

/// AntiBERTy's input: `[CLS]`, one token per residue, `[SEP]` (its runner feeds the residues
/// space-separated to a WordPiece tokenizer over `vocab.txt`).
///
/// # Errors
/// The tokenizer's, for residues it cannot encode.
pub fn antibody_ids(tokenizer: &HfTokenizer, residues: &str) -> anyhow::Result<Vec<u32>> {
    let spaced: Vec<String> = residues.chars().map(String::from).collect();
    let special = tokenizer.special();
    let mut ids = vec![special.bos];
    ids.extend(tokenizer.encode(&spaced.join(" "))?);
    ids.push(special.eos);
    Ok(ids)
}

/// The residues of `ids`, special tokens dropped.
pub fn residues(tokenizer: &HfTokenizer, ids: &[u32]) -> String {
    ids.iter()
        .filter_map(|&id| tokenizer.id_to_token(id))
        .filter(|token| token.len() == 1)
        .collect()
}

/// The ids AntiBERTy must never generate: everything that is not an amino acid.
pub fn special_ids(tokenizer: &HfTokenizer) -> Vec<u32> {
    ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .filter_map(|token| tokenizer.token_to_id(token))
        .collect()
}
