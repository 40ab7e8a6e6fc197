//! Seeding bare repositories with one deterministic commit (plumbing only, no work tree).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::FrontsError;

/// Author/committer identity and date of the seeded commit (fixed, so the commit id is stable).
const IDENTITY: [(&str, &str); 6] = [
    ("GIT_AUTHOR_NAME", "Seed"),
    ("GIT_AUTHOR_EMAIL", "seed@example.invalid"),
    ("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z"),
    ("GIT_COMMITTER_NAME", "Seed"),
    ("GIT_COMMITTER_EMAIL", "seed@example.invalid"),
    ("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z"),
];

/// Runs `git <args>` in a clean environment (no user/system config), feeding `stdin`.
async fn git(git_bin: &Path, cwd: Option<&Path>, args: &[&str], stdin: &[u8]) -> Result<String, FrontsError> {
    let mut cmd = Command::new(git_bin);
    if let Some(dir) = cwd {
        cmd.arg("-C").arg(dir);
    }
    let mut child = cmd
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .envs(IDENTITY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| FrontsError::Tool {
            tool: "git",
            detail: e.to_string(),
        })?;
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin).await?;
    }
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        return Err(FrontsError::Tool {
            tool: "git",
            detail: format!(
                "git {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Whether `full_path` is a safe relative project path (`group[/sub…]/project`).
pub(crate) fn valid_full_path(full_path: &str) -> bool {
    full_path.contains('/')
        && full_path.split('/').all(|seg| {
            !seg.is_empty()
                && !seg.starts_with('.')
                && !seg.ends_with(".git")
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
}

/// Creates `<repos_dir>/<full_path>.git` with `main` holding one commit of `README.md`.
pub(crate) async fn seed(git_bin: &Path, repos_dir: &Path, full_path: &str) -> Result<PathBuf, FrontsError> {
    if !valid_full_path(full_path) {
        return Err(FrontsError::InvalidName(full_path.to_owned()));
    }
    let bare = repos_dir.join(format!("{full_path}.git"));
    if bare.exists() {
        return Err(FrontsError::AlreadySeeded(full_path.to_owned()));
    }
    if let Some(parent) = bare.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    let bare_str = bare.to_string_lossy().into_owned();
    git(
        git_bin,
        None,
        &["init", "-q", "--bare", "--initial-branch=main", &bare_str],
        b"",
    )
    .await?;
    let readme = format!("# {full_path}\n\nSeeded by the testbed.\n");
    let blob = git(
        git_bin,
        Some(&bare),
        &["hash-object", "-w", "--stdin"],
        readme.as_bytes(),
    )
    .await?;
    let tree_line = format!("100644 blob {blob}\tREADME.md\n");
    let tree = git(git_bin, Some(&bare), &["mktree"], tree_line.as_bytes()).await?;
    let commit = git(
        git_bin,
        Some(&bare),
        &["commit-tree", &tree, "-m", "Initial commit"],
        b"",
    )
    .await?;
    git(
        git_bin,
        Some(&bare),
        &["update-ref", "refs/heads/main", &commit],
        b"",
    )
    .await?;
    Ok(bare)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_full_paths_by_table() {
        for (p, ok) in [
            ("acme/app", true),
            ("acme/team-a/app_1", true),
            ("app", false),
            ("acme/../x", false),
            ("acme//x", false),
            ("/acme/x", false),
            ("acme/x.git", false),
        ] {
            assert_eq!(valid_full_path(p), ok, "{p}");
        }
    }

    #[tokio::test]
    async fn seeded_commit_is_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let git_bin = PathBuf::from("git");
        let a = seed(&git_bin, &dir.path().join("one"), "acme/app").await.unwrap();
        let b = seed(&git_bin, &dir.path().join("two"), "acme/app").await.unwrap();
        let head_a = git(&git_bin, Some(&a), &["rev-parse", "main"], b"")
            .await
            .unwrap();
        let head_b = git(&git_bin, Some(&b), &["rev-parse", "main"], b"")
            .await
            .unwrap();
        assert_eq!(head_a.len(), 40);
        assert_eq!(head_a, head_b);
        assert!(seed(&git_bin, &dir.path().join("one"), "acme/app").await.is_err());
    }
}
