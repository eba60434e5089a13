//! Metadata: a download starts only from metadata that is consistent, is
//! of the asked file and matches an expected file hash.

use super::*;

/// `out` is only the command's refusal `want`: no file touched.
fn refused_untouched(out: &[Output], want: &ClientError) {
    assert_eq!(
        out,
        vec![Output::Done {
            tag: 5,
            result: Err(want.clone())
        }],
        "refused before any file is touched"
    );
}

#[test]
fn consistent_metadata_starts_the_download() {
    let out = download_with(good_meta());
    assert!(
        out.iter().any(|o| matches!(o, Output::OpenDest { .. })),
        "{out:?}"
    );
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Done {
            tag: 5,
            result: Ok(CommandOk::Started { .. })
        }
    )));
}

#[test]
fn metadata_whose_file_hash_does_not_commit_to_the_pieces_is_refused() {
    let good = good_meta();
    let mut forged = good.clone();
    forged.piece_hashes[1] = Sha1Hash([0xaa; 20]);
    let out = download_with(forged.clone());
    let want = ClientError::BadMetadata {
        file: good.name.clone(),
        error: DownloadError::FileHashMismatch {
            expected: good.file_hash,
            computed: hash::meta_root(&forged),
        },
    };
    refused_untouched(&out, &want);
    assert!(want.to_string().contains("does not match"), "{want}");
}

/// Issue 16 §10: asked for one file, a hostile tracker answers with
/// another's (valid) metadata; nothing is opened or fetched.
#[test]
fn metadata_of_another_file_is_refused() {
    let other = good_meta();
    let asked = FileName::new("report.pdf").unwrap();
    let (out, ..) = asked_for(asked.clone(), None, other.clone());
    let want = ClientError::BadMetadata {
        file: asked.clone(),
        error: DownloadError::WrongFile {
            asked,
            got: other.name.clone(),
        },
    };
    refused_untouched(&out, &want);
    assert!(want.to_string().contains("not of report.pdf"), "{want}");
}

/// `download_file ... --hash H`: metadata with another file hash is
/// refused before anything is fetched; the right hash starts the download.
#[test]
fn an_expected_file_hash_must_match() {
    let meta = good_meta();
    let wrong = Sha1Hash([0x11; 20]);
    let (out, ..) = asked_for(meta.name.clone(), Some(wrong), meta.clone());
    let want = ClientError::BadMetadata {
        file: meta.name.clone(),
        error: DownloadError::NotExpectedHash {
            expected: wrong,
            got: meta.file_hash,
        },
    };
    assert_eq!(
        out,
        vec![Output::Done {
            tag: 5,
            result: Err(want)
        }]
    );
    let (out, ..) = asked_for(meta.name.clone(), Some(meta.file_hash), meta.clone());
    assert!(
        out.iter().any(|o| matches!(o, Output::OpenDest { .. })),
        "the right hash starts it: {out:?}"
    );
}
