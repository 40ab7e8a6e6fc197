//! Repository files, commits and branches (`lib/api/files.rb`, `commits.rb`, `branches.rb`) on
//! the fronts' bare repositories: `GET|HEAD /projects/:id/repository/files/:file_path` (`ref`
//! required) and `…/raw` (`ref` defaults to HEAD), `POST|PUT|DELETE …/files/:file_path` (a commit
//! on `branch`), `GET …/repository/commits/:sha` and `GET …/repository/branches/:branch`.
//!
//! Order of checks as in GitLab: the guard (token, scope), parameters (Grape 400), the project
//! (404 `Project Not Found`), `download_code` (Reporter+ on private projects, 403), the ref (404
//! `Commit Not Found`), the path (404 `File Not Found`). Writes need `api`, Developer+ and, on the
//! default branch (protected by default), Maintainer+: 403 `You are not allowed to push into this
//! branch`; service refusals are 400 `{"message": "…"}`.

use std::{path::PathBuf, sync::Arc};

use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{
    auth::{Caller, MaybeCaller, READ, WRITE},
    params::Params,
    resolve,
};
use crate::gitlab::{
    error::ApiError,
    model::{DEVELOPER, MAINTAINER, OWNER, Project, REPORTER, Source, User},
    repos::{Blob, CommitInfo, CommitRefusal, FileAction, FileCommit, GitError, Repositories},
    state::GitLabState,
};

type Api = Result<Response, ApiError>;
type S = Arc<GitLabState>;

/// Scopes of the files GET endpoints (`read_repository` allowed there, GET/HEAD only).
const FILE_READ: &[&str] = &["api", "read_api", "read_repository"];

fn git_failed(e: GitError) -> ApiError {
    tracing::warn!(error = %e, "repository operation failed");
    ApiError::Api(500, "500 Internal Server Error".into())
}

/// The caller's level on a project (admins count as Owner).
fn level(state: &GitLabState, user: Option<&User>, p: &Project) -> u32 {
    match user {
        Some(u) if u.is_admin => OWNER,
        Some(u) => state.store().effective_level(u.id, Source::Project(p.id)),
        None => 0,
    }
}

/// Resolves a project the caller may read code of: 404 when invisible, 403 without
/// `download_code` (public: everyone; internal: signed-in users; private: Reporter+).
fn readable(state: &GitLabState, caller: &MaybeCaller, id: &str) -> Result<(Project, String), ApiError> {
    let user = caller.0.as_ref().map(|c| &c.user);
    let (p, path) = {
        let store = state.store();
        let p = resolve::project(&store, user, id)?;
        let path = store.project_path(&p);
        (p, path)
    };
    let open = p.visibility == "public" || (p.visibility == "internal" && user.is_some());
    if !open && level(state, user, &p) < REPORTER {
        return Err(ApiError::Forbidden(None));
    }
    Ok((p, path))
}

/// The project's bare repository, if repositories are attached and it exists.
fn bare(state: &GitLabState, path: &str) -> Option<(Repositories, PathBuf)> {
    let repos = state.repositories()?;
    let bare = repos.bare(path)?;
    Some((repos, bare))
}

/// GitLab's `file_path` validator: relative, no `..` segment, no NUL/newline.
fn check_file_path(file_path: &str) -> Result<(), ApiError> {
    let bad = file_path.is_empty()
        || file_path.starts_with('/')
        || file_path.contains(['\0', '\n'])
        || file_path.split('/').any(|s| s == ".." || s.is_empty());
    if bad {
        Err(ApiError::Param("file_path should be a valid file path".into()))
    } else {
        Ok(())
    }
}

/// A file read: the resolved commit, the blob, the last commit touching it.
struct FileRead {
    reference: String,
    commit: String,
    last_commit: String,
    blob: Blob,
}

async fn read_file(
    state: &GitLabState,
    path: &str,
    reference: &str,
    file_path: &str,
) -> Result<FileRead, ApiError> {
    let Some((repos, bare)) = bare(state, path) else {
        return Err(ApiError::not_found("Commit"));
    };
    let commit = repos
        .resolve(&bare, reference)
        .await
        .map_err(git_failed)?
        .ok_or_else(|| ApiError::not_found("Commit"))?;
    let blob = repos
        .blob(&bare, &commit, file_path)
        .await
        .map_err(git_failed)?
        .ok_or_else(|| ApiError::not_found("File"))?;
    let last_commit = repos
        .last_commit_for(&bare, &commit, file_path)
        .await
        .map_err(git_failed)?;
    Ok(FileRead {
        reference: reference.to_string(),
        commit,
        last_commit,
        blob,
    })
}

fn file_name(file_path: &str) -> &str {
    file_path.rsplit('/').next().unwrap_or(file_path)
}

/// The `X-Gitlab-*` headers of the files endpoints.
fn file_headers(file_path: &str, read: &FileRead) -> HeaderMap {
    let sha = hex(&Sha256::digest(&read.blob.content));
    let mut headers = HeaderMap::new();
    let size = read.blob.content.len().to_string();
    let executable = read.blob.executable.to_string();
    for (name, value) in [
        ("x-gitlab-blob-id", read.blob.id.as_str()),
        ("x-gitlab-commit-id", read.commit.as_str()),
        ("x-gitlab-content-sha256", sha.as_str()),
        ("x-gitlab-encoding", "base64"),
        ("x-gitlab-file-name", file_name(file_path)),
        ("x-gitlab-file-path", file_path),
        ("x-gitlab-last-commit-id", read.last_commit.as_str()),
        ("x-gitlab-ref", read.reference.as_str()),
        ("x-gitlab-size", size.as_str()),
        ("x-gitlab-execute-filemode", executable.as_str()),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    }
    headers
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `GET|HEAD /projects/:id/repository/files/:file_path?ref=`.
pub async fn get_file(
    State(state): State<S>,
    caller: MaybeCaller,
    Path((id, file_path)): Path<(String, String)>,
    params: Params,
) -> Api {
    if let Some(c) = &caller.0 {
        c.require_scopes(FILE_READ)?;
    }
    let reference = match params.str("ref") {
        None => return Err(ApiError::Param("ref is missing".into())),
        Some(r) if r.is_empty() => return Err(ApiError::Param("ref is empty".into())),
        Some(r) => r,
    };
    check_file_path(&file_path)?;
    let (_, path) = readable(&state, &caller, &id)?;
    let read = read_file(&state, &path, &reference, &file_path).await?;
    let headers = file_headers(&file_path, &read);
    let content = &read.blob.content;
    let body = json!({
        "file_name": file_name(&file_path), "file_path": file_path, "size": content.len(),
        "encoding": "base64", "content_sha256": hex(&Sha256::digest(content)), "ref": reference,
        "blob_id": read.blob.id, "commit_id": read.commit, "last_commit_id": read.last_commit,
        "execute_filemode": read.blob.executable,
        "content": base64::engine::general_purpose::STANDARD.encode(content),
    });
    Ok((headers, Json(body)).into_response())
}

/// `GET /projects/:id/repository/files/:file_path/raw` (`ref` defaults to HEAD).
pub async fn get_raw(
    State(state): State<S>,
    caller: MaybeCaller,
    Path((id, file_path)): Path<(String, String)>,
    params: Params,
) -> Api {
    if let Some(c) = &caller.0 {
        c.require_scopes(FILE_READ)?;
    }
    check_file_path(&file_path)?;
    let (_, path) = readable(&state, &caller, &id)?;
    let reference = params
        .str("ref")
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "HEAD".into());
    let read = read_file(&state, &path, &reference, &file_path).await?;
    let mut headers = file_headers(&file_path, &read);
    let content_type = if std::str::from_utf8(&read.blob.content).is_ok() {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=0, private, must-revalidate, no-store, no-cache"),
    );
    Ok((headers, read.blob.content).into_response())
}

/// Which write a files request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    Create,
    Update,
    Delete,
}

async fn write_file(
    state: &GitLabState,
    caller: &Caller,
    id: &str,
    file_path: &str,
    params: &Params,
    kind: Write,
) -> Api {
    caller.require_scopes(WRITE)?;
    let mut wanted = vec!["branch", "commit_message"];
    if kind != Write::Delete {
        wanted.insert(1, "content");
    }
    let missing: Vec<String> = wanted
        .iter()
        .filter(|n| params.str(n).is_none())
        .map(|n| format!("{n} is missing"))
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::Param(missing.join(", ")));
    }
    check_file_path(file_path)?;
    let encoding = params.str("encoding").unwrap_or_else(|| "text".into());
    if !["text", "base64"].contains(&encoding.as_str()) {
        return Err(ApiError::Param("encoding does not have a valid value".into()));
    }
    let executable = params.bool("execute_filemode")?;
    let branch = params.required("branch")?;
    let (project, path) = {
        let store = state.store();
        let p = resolve::project(&store, Some(&caller.user), id)?;
        let path = store.project_path(&p);
        (p, path)
    };
    let role = level(state, Some(&caller.user), &project);
    let needed = if branch == project.default_branch {
        MAINTAINER
    } else {
        DEVELOPER
    };
    if project.archived || role < DEVELOPER {
        return Err(ApiError::Forbidden(None));
    }
    if role < needed {
        return Err(ApiError::Forbidden(Some(
            "You are not allowed to push into this branch".into(),
        )));
    }
    let content = params.str("content").unwrap_or_default();
    let content = if encoding == "base64" {
        base64::engine::general_purpose::STANDARD
            .decode(content.trim())
            .map_err(|_| ApiError::Api(400, "Invalid base64 content".into()))?
    } else {
        content.into_bytes()
    };
    let Some(repos) = state.repositories() else {
        return Err(ApiError::Api(
            400,
            "A repository for this project does not exist yet.".into(),
        ));
    };
    let bare = repos
        .ensure(&path, &project.default_branch)
        .await
        .map_err(git_failed)?;
    if let Some(expected) = params.str("last_commit_id").filter(|s| !s.is_empty())
        && let Some(head) = repos.branch(&bare, &branch).await.map_err(git_failed)?
    {
        let last = repos
            .last_commit_for(&bare, &head, file_path)
            .await
            .map_err(git_failed)?;
        if last != expected {
            return Err(ApiError::Api(
                400,
                "You are attempting to update a file that has changed since you started editing it.".into(),
            ));
        }
    }
    let author = (
        params
            .str("author_name")
            .unwrap_or_else(|| caller.user.name.clone()),
        params
            .str("author_email")
            .unwrap_or_else(|| format!("{}@example.com", caller.user.username)),
    );
    let change = FileCommit {
        branch: branch.clone(),
        start_branch: params.str("start_branch").filter(|s| !s.is_empty()),
        file_path: file_path.to_string(),
        action: match kind {
            Write::Create => FileAction::Create(content),
            Write::Update => FileAction::Update(content),
            Write::Delete => FileAction::Delete,
        },
        executable,
        message: params.str("commit_message").unwrap_or_default(),
        author,
        at: state.now(),
    };
    match repos.commit_file(&bare, &change).await {
        Ok(_) => {}
        Err(CommitRefusal::Git(e)) => return Err(git_failed(e)),
        Err(refusal) => return Err(ApiError::Api(400, refusal.to_string())),
    }
    if let Some(p) = state.store().projects.get_mut(&project.id) {
        p.has_repository = true;
    }
    let body = json!({"file_path": file_path, "branch": branch});
    Ok(match kind {
        Write::Create => (StatusCode::CREATED, Json(body)).into_response(),
        Write::Update => Json(body).into_response(),
        Write::Delete => StatusCode::NO_CONTENT.into_response(),
    })
}

/// `POST /projects/:id/repository/files/:file_path`: 201 `{"file_path","branch"}`.
pub async fn create_file(
    State(s): State<S>,
    c: Caller,
    Path((id, f)): Path<(String, String)>,
    p: Params,
) -> Api {
    write_file(&s, &c, &id, &f, &p, Write::Create).await
}

/// `PUT /projects/:id/repository/files/:file_path`: 200 `{"file_path","branch"}`.
pub async fn update_file(
    State(s): State<S>,
    c: Caller,
    Path((id, f)): Path<(String, String)>,
    p: Params,
) -> Api {
    write_file(&s, &c, &id, &f, &p, Write::Update).await
}

/// `DELETE /projects/:id/repository/files/:file_path`: 204.
pub async fn delete_file(
    State(s): State<S>,
    c: Caller,
    Path((id, f)): Path<(String, String)>,
    p: Params,
) -> Api {
    write_file(&s, &c, &id, &f, &p, Write::Delete).await
}

/// GitLab's date format for commits (`2024-01-01T00:00:00.000+00:00`).
fn commit_date(iso: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(iso)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string())
        .unwrap_or_else(|_| iso.to_string())
}

/// The basic `Commit` entity.
fn commit_entity(info: &CommitInfo, web_base: &str) -> Value {
    let title = info.message.lines().next().unwrap_or_default();
    json!({
        "id": info.id, "short_id": info.id.get(..8).unwrap_or(&info.id),
        "created_at": commit_date(&info.committed_date), "parent_ids": info.parent_ids,
        "title": title, "message": info.message, "author_name": info.author_name,
        "author_email": info.author_email, "authored_date": commit_date(&info.authored_date),
        "committer_name": info.committer_name, "committer_email": info.committer_email,
        "committed_date": commit_date(&info.committed_date), "trailers": {}, "extended_trailers": {},
        "web_url": format!("{web_base}/-/commit/{}", info.id),
    })
}

/// `GET /projects/:id/repository/commits/:sha` (`CommitDetail`; `stats` unless `stats=false`).
pub async fn get_commit(
    State(state): State<S>,
    caller: MaybeCaller,
    Path((id, sha)): Path<(String, String)>,
    params: Params,
) -> Api {
    if let Some(c) = &caller.0 {
        c.require_scopes(READ)?;
    }
    let with_stats = params.bool("stats")?.unwrap_or(true);
    let (p, path) = readable(&state, &caller, &id)?;
    let (repos, bare) = bare(&state, &path).ok_or_else(|| ApiError::not_found("Commit"))?;
    let commit = repos
        .resolve(&bare, &sha)
        .await
        .map_err(git_failed)?
        .ok_or_else(|| ApiError::not_found("Commit"))?;
    let info = repos.commit_info(&bare, &commit).await.map_err(git_failed)?;
    let web_base = format!("{}/{}", state.settings().base_url, path);
    let mut body = commit_entity(&info, &web_base);
    if let Some(map) = body.as_object_mut() {
        map.insert("status".into(), Value::Null);
        map.insert("last_pipeline".into(), Value::Null);
        map.insert("project_id".into(), json!(p.id));
        if with_stats {
            let (additions, deletions) = repos.stats(&bare, &commit).await.map_err(git_failed)?;
            map.insert(
                "stats".into(),
                json!({"additions": additions, "deletions": deletions, "total": additions + deletions}),
            );
        }
    }
    Ok(Json(body).into_response())
}

/// `GET /projects/:id/repository/branches/:branch`: the default branch is protected
/// (Maintainers push), others are not.
pub async fn get_branch(
    State(state): State<S>,
    caller: MaybeCaller,
    Path((id, branch)): Path<(String, String)>,
) -> Api {
    if let Some(c) = &caller.0 {
        c.require_scopes(READ)?;
    }
    let (p, path) = readable(&state, &caller, &id)?;
    let (repos, bare) = bare(&state, &path).ok_or_else(|| ApiError::not_found("Branch"))?;
    let commit = repos
        .branch(&bare, &branch)
        .await
        .map_err(git_failed)?
        .ok_or_else(|| ApiError::not_found("Branch"))?;
    let info = repos.commit_info(&bare, &commit).await.map_err(git_failed)?;
    let base = format!("{}/{}", state.settings().base_url, path);
    let default = branch == p.default_branch;
    let role = level(&state, caller.0.as_ref().map(|c| &c.user), &p);
    let can_push = !p.archived && role >= if default { MAINTAINER } else { DEVELOPER };
    Ok(Json(json!({
        "name": branch, "commit": commit_entity(&info, &base), "merged": false,
        "protected": default, "developers_can_push": !default, "developers_can_merge": !default,
        "can_push": can_push, "default": default, "web_url": format!("{base}/-/tree/{branch}"),
    }))
    .into_response())
}
