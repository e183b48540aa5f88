// ELK in a web worker, so a layout never blocks the page. The worker script is
// shipped as a file of the bundle (no network).

import ELK from 'elkjs/lib/elk-api';
import workerUrl from 'elkjs/lib/elk-worker.min.js?url';
import type { ElkLike } from './layout';

let elk: ElkLike | undefined;

export function getElk(): ElkLike {
  elk ??= new ELK({ workerUrl });
  return elk;
}
