//! The emulator's view of the fronts' bare repositories (`<dir>/<full_path>.git`), read and
//! written with git plumbing so `git clone` over smart HTTP sees every commit the REST API makes:
//! ref resolution, blobs at a commit, the last commit touching a path, commit details, and
//! commits that create, update or delete one file (a private index, `commit-tree`, then a
//! compare-and-swap `update-ref`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::{io::AsyncWriteExt, process::Command, sync::Mutex};

use super::fronts::seed_git::valid_full_path;

/// Where the bare repositories live and which `git` runs on them.
#[derive(Debug, Clone)]
pub struct Repositories {
    git_bin: PathBuf,
    dir: PathBuf,
    /// Serialises writes (GitLab's per-repository locking, roughly).
    write_lock: Arc<Mutex<()>>,
}

/// A git failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("git {command}: {detail}")]
pub struct GitError {
    /// The git subcommand.
    pub command: String,
    /// Its stderr (or spawn error).
    pub detail: String,
}

/// A file at a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// Blob id.
    pub id: String,
    /// Whether the mode is 100755.
    pub executable: bool,
    /// Raw bytes.
    pub content: Vec<u8>,
}

/// The fields of a commit GitLab's `Commit` entity shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    /// Full SHA.
    pub id: String,
    /// Parent SHAs.
    pub parent_ids: Vec<String>,
    /// Author name.
    pub author_name: String,
    /// Author email.
    pub author_email: String,
    /// Author date (strict ISO 8601).
    pub authored_date: String,
    /// Committer name.
    pub committer_name: String,
    /// Committer email.
    pub committer_email: String,
    /// Committer date (strict ISO 8601).
    pub committed_date: String,
    /// Full message.
    pub message: String,
}

/// What a file commit does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileAction {
    /// Create (the file must not exist).
    Create(Vec<u8>),
    /// Replace (the file must exist).
    Update(Vec<u8>),
    /// Remove (the file must exist).
    Delete,
}

/// A one-file commit.
#[derive(Debug, Clone)]
pub struct FileCommit {
    /// Branch to commit to.
    pub branch: String,
    /// Branch to start from when `branch` does not exist yet.
    pub start_branch: Option<String>,
    /// Path inside the repository.
    pub file_path: String,
    /// The change.
    pub action: FileAction,
    /// Mode 100755 when Some(true), 100644 when Some(false), unchanged (or 100644) when None.
    pub executable: Option<bool>,
    /// Commit message.
    pub message: String,
    /// Author (and committer) name and email.
    pub author: (String, String),
    /// Author and committer date (the emulator clock).
    pub at: DateTime<Utc>,
}

/// Why a file commit was refused, with GitLab's messages (`render_api_error!(…, 400)`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitRefusal {
    /// Neither the branch nor the start branch exists in a non-empty repository.
    #[error("You can only create or edit files when you are on a branch")]
    NotOnBranch,
    /// `start_branch` given but `branch` exists already.
    #[error("A branch called '{0}' already exists. Switch to that branch in order to make changes")]
    BranchExists(String),
    /// Create of an existing file.
    #[error("A file with this name already exists")]
    FileExists,
    /// Update or delete of a missing file.
    #[error("A file with this name doesn't exist")]
    FileMissing,
    /// The branch moved while committing.
    #[error("Could not update branch {0}")]
    Raced(String),
    /// Git failed.
    #[error("{0}")]
    Git(#[from] GitError),
}

const ZERO_OID: &str = "0000000000000000000000000000000000000000";

impl Repositories {
    /// Repositories under `dir`, run with `git_bin`.
    pub fn new(git_bin: impl Into<PathBuf>, dir: impl Into<PathBuf>) -> Self {
        Self {
            git_bin: git_bin.into(),
            dir: dir.into(),
            write_lock: Arc::new(Mutex::new(())),
        }
    }

    /// The bare repository of a project, if its path is safe and it exists.
    pub fn bare(&self, project_path: &str) -> Option<PathBuf> {
        let path = self.dir.join(format!("{project_path}.git"));
        (valid_full_path(project_path) && path.is_dir()).then_some(path)
    }

    async fn git(
        &self,
        repo: &Path,
        args: &[&str],
        env: &[(&str, String)],
        stdin: &[u8],
    ) -> Result<(bool, Vec<u8>, String), GitError> {
        let err = |detail: String| GitError {
            command: args.first().copied().unwrap_or_default().to_string(),
            detail,
        };
        let mut child = Command::new(&self.git_bin)
            .arg("-C")
            .arg(repo)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_LITERAL_PATHSPECS", "1")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| err(e.to_string()))?;
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin).await.map_err(|e| err(e.to_string()))?;
        }
        let out = child.wait_with_output().await.map_err(|e| err(e.to_string()))?;
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        Ok((out.status.success(), out.stdout, stderr))
    }

    async fn git_ok(
        &self,
        repo: &Path,
        args: &[&str],
        env: &[(&str, String)],
        stdin: &[u8],
    ) -> Result<String, GitError> {
        let (ok, out, stderr) = self.git(repo, args, env, stdin).await?;
        if !ok {
            return Err(GitError {
                command: args.first().copied().unwrap_or_default().to_string(),
                detail: stderr,
            });
        }
        Ok(String::from_utf8_lossy(&out).trim().to_string())
    }

    /// The commit a ref (branch, tag, SHA; `HEAD` = default branch) names, if any.
    pub async fn resolve(&self, repo: &Path, rev: &str) -> Result<Option<String>, GitError> {
        if rev.is_empty() || rev.starts_with('-') || rev.contains(['\0', '\n', ':']) {
            return Ok(None);
        }
        let spec = format!("{rev}^{{commit}}");
        let (ok, out, _) = self
            .git(
                repo,
                &["rev-parse", "--verify", "--quiet", "--end-of-options", &spec],
                &[],
                b"",
            )
            .await?;
        Ok(ok.then(|| String::from_utf8_lossy(&out).trim().to_string()))
    }

    /// Whether `refs/heads/<branch>` exists; its commit.
    pub async fn branch(&self, repo: &Path, branch: &str) -> Result<Option<String>, GitError> {
        if branch.is_empty() || branch.starts_with('-') {
            return Ok(None);
        }
        let full = format!("refs/heads/{branch}");
        let (ok, out, _) = self
            .git(
                repo,
                &[
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    "--end-of-options",
                    &format!("{full}^{{commit}}"),
                ],
                &[],
                b"",
            )
            .await?;
        Ok(ok.then(|| String::from_utf8_lossy(&out).trim().to_string()))
    }

    /// The blob at `path` in `commit`, if it is a file.
    pub async fn blob(&self, repo: &Path, commit: &str, path: &str) -> Result<Option<Blob>, GitError> {
        let listing = self
            .git_ok(
                repo,
                &["ls-tree", "-z", "--full-tree", commit, "--", path],
                &[],
                b"",
            )
            .await?;
        let entry = listing.split('\0').find_map(|line| {
            let (meta, name) = line.split_once('\t')?;
            let mut parts = meta.split(' ');
            let (mode, kind, id) = (parts.next()?, parts.next()?, parts.next()?);
            (name == path && kind == "blob").then(|| (mode == "100755", id.to_string()))
        });
        let Some((executable, id)) = entry else {
            return Ok(None);
        };
        let (ok, content, stderr) = self.git(repo, &["cat-file", "blob", &id], &[], b"").await?;
        if !ok {
            return Err(GitError {
                command: "cat-file".into(),
                detail: stderr,
            });
        }
        Ok(Some(Blob {
            id,
            executable,
            content,
        }))
    }

    /// The last commit reachable from `commit` that touched `path`.
    pub async fn last_commit_for(&self, repo: &Path, commit: &str, path: &str) -> Result<String, GitError> {
        self.git_ok(repo, &["rev-list", "-1", commit, "--", path], &[], b"")
            .await
    }

    /// Commit details.
    pub async fn commit_info(&self, repo: &Path, sha: &str) -> Result<CommitInfo, GitError> {
        let out = self
            .git_ok(
                repo,
                &[
                    "show",
                    "-s",
                    "--format=%H%x00%P%x00%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%B",
                    sha,
                    "--",
                ],
                &[],
                b"",
            )
            .await?;
        let f: Vec<&str> = out.splitn(9, '\0').collect();
        let get = |i: usize| f.get(i).copied().unwrap_or_default().to_string();
        Ok(CommitInfo {
            id: get(0),
            parent_ids: get(1).split_whitespace().map(str::to_string).collect(),
            author_name: get(2),
            author_email: get(3),
            authored_date: get(4),
            committer_name: get(5),
            committer_email: get(6),
            committed_date: get(7),
            message: get(8),
        })
    }

    /// Lines added and deleted by a commit (against its first parent).
    pub async fn stats(&self, repo: &Path, sha: &str) -> Result<(u64, u64), GitError> {
        let out = self
            .git_ok(
                repo,
                &["show", "--numstat", "--format=", "--first-parent", sha, "--"],
                &[],
                b"",
            )
            .await?;
        Ok(out.lines().fold((0, 0), |(a, d), line| {
            let mut parts = line.split('\t');
            let n = |p: Option<&str>| p.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            (a + n(parts.next()), d + n(parts.next()))
        }))
    }

    /// Creates the bare repository of a project (empty, default branch `default_branch`) unless
    /// it exists; returns its path.
    pub async fn ensure(&self, project_path: &str, default_branch: &str) -> Result<PathBuf, GitError> {
        if let Some(path) = self.bare(project_path) {
            return Ok(path);
        }
        if !valid_full_path(project_path) {
            return Err(GitError {
                command: "init".into(),
                detail: format!("invalid project path {project_path:?}"),
            });
        }
        let path = self.dir.join(format!("{project_path}.git"));
        let io = |e: std::io::Error| GitError {
            command: "init".into(),
            detail: e.to_string(),
        };
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(io)?;
        }
        let branch = format!("--initial-branch={default_branch}");
        let target = path.to_string_lossy().into_owned();
        self.git_ok(&self.dir, &["init", "-q", "--bare", &branch, &target], &[], b"")
            .await?;
        Ok(path)
    }

    /// Commits one file change to a branch; returns the new commit id.
    pub async fn commit_file(&self, repo: &Path, change: &FileCommit) -> Result<String, CommitRefusal> {
        let _guard = self.write_lock.lock().await;
        let head = self.branch(repo, &change.branch).await?;
        let empty = self.resolve(repo, "HEAD").await?.is_none()
            && self
                .git_ok(repo, &["for-each-ref", "--count=1", "refs/heads"], &[], b"")
                .await?
                .is_empty();
        let parent = match (&head, &change.start_branch) {
            (Some(_), Some(start)) if start != &change.branch => {
                return Err(CommitRefusal::BranchExists(change.branch.clone()));
            }
            (Some(h), _) => Some(h.clone()),
            (None, Some(start)) => match self.branch(repo, start).await? {
                Some(c) => Some(c),
                None if empty => None,
                None => return Err(CommitRefusal::NotOnBranch),
            },
            (None, None) if empty => None,
            (None, None) => return Err(CommitRefusal::NotOnBranch),
        };
        let existing = match &parent {
            Some(p) => self.blob(repo, p, &change.file_path).await?,
            None => None,
        };
        match (&change.action, &existing) {
            (FileAction::Create(_), Some(_)) => return Err(CommitRefusal::FileExists),
            (FileAction::Update(_) | FileAction::Delete, None) => return Err(CommitRefusal::FileMissing),
            _ => {}
        }
        let index_dir = tempfile::tempdir().map_err(|e| GitError {
            command: "index".into(),
            detail: e.to_string(),
        })?;
        let index = [(
            "GIT_INDEX_FILE",
            index_dir.path().join("index").to_string_lossy().into_owned(),
        )];
        match &parent {
            Some(p) => self.git_ok(repo, &["read-tree", p], &index, b"").await?,
            None => self.git_ok(repo, &["read-tree", "--empty"], &index, b"").await?,
        };
        match &change.action {
            FileAction::Create(content) | FileAction::Update(content) => {
                let blob = self
                    .git_ok(repo, &["hash-object", "-w", "--stdin"], &[], content)
                    .await?;
                let executable = change
                    .executable
                    .unwrap_or_else(|| existing.as_ref().is_some_and(|b| b.executable));
                let mode = if executable { "100755" } else { "100644" };
                let line = format!("{mode} {blob}\t{}\n", change.file_path);
                self.git_ok(repo, &["update-index", "--index-info"], &index, line.as_bytes())
                    .await?;
            }
            FileAction::Delete => {
                // Mode 0 removes the path (`--force-remove` would want a work tree).
                let line = format!("0 {ZERO_OID}\t{}\n", change.file_path);
                self.git_ok(repo, &["update-index", "--index-info"], &index, line.as_bytes())
                    .await?;
            }
        }
        let tree = self.git_ok(repo, &["write-tree"], &index, b"").await?;
        let date = change.at.to_rfc3339();
        let (name, email) = &change.author;
        let identity = [
            ("GIT_AUTHOR_NAME", name.clone()),
            ("GIT_AUTHOR_EMAIL", email.clone()),
            ("GIT_AUTHOR_DATE", date.clone()),
            ("GIT_COMMITTER_NAME", name.clone()),
            ("GIT_COMMITTER_EMAIL", email.clone()),
            ("GIT_COMMITTER_DATE", date),
        ];
        let mut args = vec!["commit-tree", tree.as_str()];
        if let Some(p) = &parent {
            args.extend(["-p", p.as_str()]);
        }
        let commit = self
            .git_ok(repo, &args, &identity, change.message.as_bytes())
            .await?;
        let full = format!("refs/heads/{}", change.branch);
        let old = head.as_deref().unwrap_or(ZERO_OID);
        let (ok, _, _) = self
            .git(repo, &["update-ref", &full, &commit, old], &[], b"")
            .await?;
        if !ok {
            return Err(CommitRefusal::Raced(change.branch.clone()));
        }
        if empty {
            let sym = format!("refs/heads/{}", change.branch);
            self.git_ok(repo, &["symbolic-ref", "HEAD", &sym], &[], b"")
                .await?;
        }
        Ok(commit)
    }
}
