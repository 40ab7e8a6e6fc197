"""Drives the GitLab emulator with python-gitlab: repository files (get, raw, create, update,
delete), project members (create, get, all, update, delete), project/group sharing and
subgroups. Prints one JSON object of observed facts for the Rust test to assert."""

import json
import os
import sys

import gitlab

gl = gitlab.Gitlab(os.environ["GITLAB_URL"], private_token=os.environ["GITLAB_TOKEN"])
project = gl.projects.get(os.environ["PROJECT"])
group_id = int(os.environ["GROUP_ID"])
user_id = int(os.environ["USER_ID"])
facts = {}


def error(call):
    try:
        call()
    except gitlab.exceptions.GitlabError as e:
        return [e.response_code, e.error_message]
    return None


readme = project.files.get(file_path="README.md", ref="main")
facts["readme"] = readme.decode().decode()
facts["readme_commit_is_last"] = readme.commit_id == readme.last_commit_id

created = project.files.create(
    {"file_path": "policies/broker.yaml", "branch": "main", "content": "grants: []\n", "commit_message": "Add"}
)
facts["created"] = {"file_path": created.file_path, "branch": created.branch}
f = project.files.get(file_path="policies/broker.yaml", ref="main")
first_commit = f.commit_id
f.content = "grants: [acme]\n"
f.save(branch="main", commit_message="Edit")
facts["raw_after_edit"] = project.files.raw(file_path="policies/broker.yaml", ref="main").decode()
facts["pinned_first"] = project.files.get(file_path="policies/broker.yaml", ref=first_commit).decode().decode()
facts["head_is_new"] = project.commits.get("main").id != first_commit
project.files.delete(file_path="policies/broker.yaml", branch="main", commit_message="Drop")
facts["deleted"] = error(lambda: project.files.get(file_path="policies/broker.yaml", ref="main"))
facts["bad_ref"] = error(lambda: project.files.get(file_path="README.md", ref="nope"))

member = project.members.create({"user_id": user_id, "access_level": 20, "expires_at": "2099-01-31"})
facts["member_created"] = [member.username, member.access_level, member.expires_at]
facts["member_duplicate"] = error(lambda: project.members.create({"user_id": user_id, "access_level": 20}))
m = project.members.get(user_id)
m.access_level = 30
m.save()
facts["member_all"] = sorted([x.username, x.access_level] for x in project.members_all.list(get_all=True))
project.members.delete(user_id)
facts["member_gone"] = error(lambda: project.members_all.get(user_id))

project.share(group_id, 20)
facts["shared_with_groups"] = gl.projects.get(project.id).shared_with_groups
facts["share_again"] = error(lambda: project.share(group_id, 30))
project.unshare(group_id)
facts["after_unshare"] = gl.projects.get(project.id).shared_with_groups

group = gl.groups.get("acme")
facts["subgroups"] = sorted(g.full_path for g in group.subgroups.list(get_all=True))
platform = gl.groups.get("acme/platform")
platform.share(group_id, 10)
facts["group_share"] = [(s["group_id"], s["group_access_level"]) for s in platform.shared_with_groups]
platform.unshare(group_id)
facts["group_after_unshare"] = gl.groups.get("acme/platform").shared_with_groups

json.dump(facts, sys.stdout)
