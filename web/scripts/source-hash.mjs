// Writes internal/ui/dist/SOURCE_HASH: the sha256 of the sources the bundle is
// built from, so a test can tell when the committed bundle is stale.
//
// Inputs: web/package.json, web/package-lock.json, web/index.html, every file
// named vite.config* directly in web/, and every file under web/src/. Paths are
// relative to the repository root with forward slashes, sorted bytewise; the
// hash covers, for each file in order, its path, a 0x00 byte, its bytes, a
// 0x00 byte. The file holds the lowercase hex digest and a newline.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync, statSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const web = join(dirname(fileURLToPath(import.meta.url)), '..');
const root = join(web, '..');

function walk(dir) {
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...walk(p));
    else if (entry.isFile()) out.push(p);
  }
  return out;
}

const files = [
  join(web, 'package.json'),
  join(web, 'package-lock.json'),
  join(web, 'index.html'),
  ...readdirSync(web, { withFileTypes: true })
    .filter((e) => e.isFile() && e.name.startsWith('vite.config'))
    .map((e) => join(web, e.name)),
  ...walk(join(web, 'src')),
];

const entries = files
  .filter((f) => statSync(f).isFile())
  .map((f) => ({ file: f, path: Buffer.from(relative(root, f).split(sep).join('/'), 'utf8') }))
  .sort((a, b) => Buffer.compare(a.path, b.path));

const hash = createHash('sha256');
const zero = Buffer.from([0]);
for (const { file, path } of entries) {
  hash.update(path);
  hash.update(zero);
  hash.update(readFileSync(file));
  hash.update(zero);
}
const digest = hash.digest('hex');
const out = join(root, 'internal', 'ui', 'dist', 'SOURCE_HASH');
writeFileSync(out, `${digest}\n`);
console.log(`SOURCE_HASH ${digest} (${entries.length} files)`);
