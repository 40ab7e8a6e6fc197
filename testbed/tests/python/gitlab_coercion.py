"""Drives the GitLab emulator with python-gitlab and prints what it observed as one JSON object.

Run by testbed/tests/gitlab_python.rs with GITLAB_URL, GITLAB_TOKEN and PROJECT set; the Rust
test asserts on the printed facts. A python-gitlab error is recorded as its status and message.
"""

import json
import os
import sys

import gitlab

gl = gitlab.Gitlab(os.environ["GITLAB_URL"], private_token=os.environ["GITLAB_TOKEN"], retry_transient_errors=False)
project = gl.projects.get(os.environ["PROJECT"])
facts = {"python_gitlab": gitlab.__version__}


def failure(fn):
    """Runs fn, expecting a GitlabError: returns [status, message]."""
    try:
        fn()
    except gitlab.exceptions.GitlabError as e:
        return [e.response_code, e.error_message]
    return None


# Create with an access level given as a string, list, rotate, revoke.
created = project.access_tokens.create(
    {"name": "py-created", "scopes": ["read_repository", "read_api"], "access_level": "30", "expires_at": "2027-01-31"}
)
facts["created"] = {
    "access_level": created.access_level,
    "scopes": created.scopes,
    "has_token": bool(getattr(created, "token", "")),
    "expires_at": created.expires_at,
}
rotated = project.access_tokens.rotate(created.id, expires_at="2027-02-28")
facts["rotated"] = {"new_id_differs": rotated["id"] != created.id, "expires_at": rotated["expires_at"]}
second = project.access_tokens.create({"name": "py-second", "scopes": ["api"], "expires_at": "2027-01-31"})
project.access_tokens.delete(second.id)

active = project.access_tokens.list(state="active", get_all=True)
inactive = project.access_tokens.list(state="inactive", get_all=True)
facts["active_names"] = sorted(t.name for t in active if t.name.startswith("py-"))
facts["inactive_names"] = sorted(t.name for t in inactive if t.name.startswith("py-"))
facts["active_ids"] = sorted(t.id for t in active if t.name.startswith("py-"))
facts["rotated_id"] = rotated["id"]
page = project.access_tokens.list(per_page="1", page="2", get_all=False)
facts["string_paging"] = {"len": len(page), "page": gl.http_get(
    f"/projects/{project.id}/access_tokens", query_data={"per_page": "1", "page": "2"}, raw=True
).headers.get("x-page")}
facts["bad_state"] = failure(lambda: project.access_tokens.list(state="bogus", get_all=False))

# Booleans and integers given as strings on GET /projects.
def project_paths(**kw):
    return sorted(p.path_with_namespace for p in gl.projects.list(get_all=True, **kw))

facts["membership_true_variants_agree"] = len(
    {tuple(project_paths(membership=v, min_access_level="40")) for v in ["true", "True", "1", "yes", "t", "Y", "on"]}
) == 1
facts["membership_true"] = project_paths(membership="True", min_access_level="40")
facts["archived_no_vs_false"] = project_paths(archived="no") == project_paths(archived=False)
facts["bad_bool"] = failure(lambda: gl.projects.list(archived="maybe", get_all=False))
facts["bad_int"] = failure(lambda: gl.projects.list(min_access_level="forty", get_all=False))

# Create failures: a level that is not a level, a level that is not a number, several at once.
facts["level_not_allowed"] = failure(
    lambda: project.access_tokens.create({"name": "x", "scopes": ["api"], "access_level": "35"})
)
facts["level_not_int"] = failure(
    lambda: project.access_tokens.create({"name": "x", "scopes": ["api"], "access_level": "forty"})
)
# python-gitlab checks required attributes itself, so its lower-level http_post sends this one.
facts["several"] = failure(
    lambda: gl.http_post(f"/projects/{project.id}/access_tokens", post_data={"scopes": ["nope"], "access_level": "x"})
)

# Form-encoded bodies through python-gitlab's session: `scopes[]` is an array, bare `scopes` is not.
url = f"{gl.api_url}/projects/{project.id}/access_tokens"
headers = {"PRIVATE-TOKEN": os.environ["GITLAB_TOKEN"]}
form = gl.session.post(
    url,
    data=[("name", "py-form"), ("scopes[]", "read_api"), ("scopes[]", "read_repository"), ("access_level", "20"),
          ("expires_at", "2027-01-31")],
    headers=headers,
)
facts["form_array"] = [form.status_code, form.json().get("scopes"), form.json().get("access_level")]
bare = gl.session.post(url, data=[("name", "py-bare"), ("scopes", "read_api")], headers=headers)
facts["form_bare_scope"] = [bare.status_code, bare.json()]

json.dump(facts, sys.stdout)
