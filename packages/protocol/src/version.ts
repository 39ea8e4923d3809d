/** Bumped on any change to frames or messages that an older peer would misread. */
export const PROTOCOL_VERSION = 2;

/** The MapScale release; peers must agree on major.minor (0.x: every minor may change the protocol). */
export const MAPSCALE_VERSION = '0.1.0';

export function releaseLine(version: string): string {
  const [major, minor] = version.split('.');
  return major === '0' ? `${major}.${minor}` : `${major}`;
}
