// Hugging Face hub names, platform-neutral: the checks shared by the Node download (./hub.js)
// and the fetch-based loader (../web.js). Both build URLs and cache paths from these, so an id
// or revision is validated before it reaches either.

export class HubError extends Error {
  override name = "HubError";
}

/** The hub's address when none is given. */
export const DEFAULT_ENDPOINT = "https://huggingface.co";

/** Validates `owner/name` ([A-Za-z0-9._-], no `..`) and splits it. */
export function parseModelId(id: string): { owner: string; name: string } {
  const m = /^([A-Za-z0-9._-]{1,96})\/([A-Za-z0-9._-]{1,96})$/.exec(id);
  if (!m || id.includes("..") || m[1] === "." || m[2] === ".") {
    throw new HubError(`invalid model id ${JSON.stringify(id)}: expected 'owner/name' with letters, digits, '.', '_', '-'`);
  }
  return { owner: m[1], name: m[2] };
}

/** Validates a branch, tag or commit (path segments of [A-Za-z0-9._-], none empty, `.` or `..`). */
export function checkRevision(rev: string): string {
  const segs = rev.split("/");
  if (!/^[A-Za-z0-9._\-/]{1,255}$/.test(rev) || segs.some((s) => s === "" || s === "." || s === "..")) {
    throw new HubError(`invalid revision ${JSON.stringify(rev)}`);
  }
  return rev;
}

/** The URL of one file of a hub model: <endpoint>/<owner>/<name>/resolve/<revision>/<file>. */
export function hubFileUrl(endpoint: string, owner: string, name: string, revision: string, file: string): string {
  return `${endpoint.replace(/\/+$/, "")}/${owner}/${name}/resolve/${encodeURIComponent(revision)}/${file}`;
}
