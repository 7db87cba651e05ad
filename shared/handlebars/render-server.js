#!/usr/bin/env node
// Renders Handlebars the way Iterable does, for liftstack's tests and previews.
//
// Protocol: one JSON object per line on stdin, one JSON object per line on stdout.
//   {"id", "template", "contexts": [...]}         -> {"id", "outputs": [...]}
//   {"id", "op": "parse", "template"}             -> {"id", "ok": true, "first", "last"}
//       first/last: the top-level text at the template's start/end as
//       {"original", "value"} (value: after whitespace control), or null if a tag
//   any failure                                   -> {"id", "error": "message"}
// Requests are independent; answers carry the request id so a client may have
// many in flight at once.
'use strict';

const readline = require('readline');
const Handlebars = require('handlebars');

const hb = Handlebars.create();

// Iterable compares field values loosely: a profile field holding 3 equals "3".
// A missing field equals nothing (it is falsy, never an error).
function same(a, b) {
  if (a === undefined || a === null || b === undefined || b === null) {
    return a === b;
  }
  if (typeof a === 'object' || typeof b === 'object') {
    return a === b;
  }
  return a === b || String(a) === String(b);
}

function blockOrValue(result, options, self) {
  if (options && typeof options.fn === 'function') {
    return result ? options.fn(self) : options.inverse(self);
  }
  return result;
}

// {{#ifEq field "value"}}...{{else}}...{{/ifEq}}
hb.registerHelper('ifEq', function (a, b, options) {
  return same(a, b) ? options.fn(this) : options.inverse(this);
});

// {{#eq a b}}...{{/eq}} as a block, or (eq a b) as a subexpression.
hb.registerHelper('eq', function (a, b, options) {
  return blockOrValue(same(a, b), options, this);
});

// {{#neq a b}}...{{/neq}} as a block, or (neq a b) as a subexpression.
hb.registerHelper('neq', function (a, b, options) {
  return blockOrValue(!same(a, b), options, this);
});

// {{defaultIfEmpty field "fallback"}}
hb.registerHelper('defaultIfEmpty', function (value, fallback) {
  const empty = value === undefined || value === null || value === '' ||
    (Array.isArray(value) && value.length === 0);
  return empty ? fallback : value;
});

// {{#ifContainsStr field "needle"}}: Iterable fails the whole send for a recipient
// whose field is missing, so this throws rather than rendering the else branch.
hb.registerHelper('ifContainsStr', function (haystack, needle, options) {
  if (haystack === undefined || haystack === null) {
    throw new Error('ifContainsStr: the field is missing (Iterable fails this send)');
  }
  return String(haystack).includes(String(needle)) ? options.fn(this) : options.inverse(this);
});

// Compiled templates by source text. Bounded so a long-lived process serving many
// distinct templates cannot grow without limit (Map keeps insertion order: LRU-ish).
const CACHE_LIMIT = 500;
const cache = new Map();

function compiled(template) {
  let fn = cache.get(template);
  if (fn) {
    cache.delete(template);
    cache.set(template, fn);
    return fn;
  }
  // Compile eagerly (compile() is lazy) so syntax errors surface here, once.
  hb.precompile(template);
  fn = hb.compile(template);
  cache.set(template, fn);
  if (cache.size > CACHE_LIMIT) {
    cache.delete(cache.keys().next().value);
  }
  return fn;
}

function edge(node) {
  if (!node || node.type !== 'ContentStatement') {
    return null;
  }
  return { original: node.original, value: node.value };
}

function handle(request) {
  if (typeof request.template !== 'string') {
    throw new Error('"template" must be a string');
  }
  const op = request.op || 'render';
  if (op === 'parse') {
    // Full parse + compile: catches lexer/parser errors and mismatched blocks.
    hb.precompile(request.template);
    // The top-level text at either end, before and after whitespace control (standalone
    // lines, `~`): lets a caller embed the template and keep how its edges render.
    const body = hb.parse(request.template).body;
    return { ok: true, first: edge(body[0]), last: edge(body[body.length - 1]) };
  }
  if (op !== 'render') {
    throw new Error('unknown op: ' + op);
  }
  if (!Array.isArray(request.contexts)) {
    throw new Error('"contexts" must be an array');
  }
  const fn = compiled(request.template);
  const outputs = request.contexts.map((context, index) => {
    try {
      return fn(context);
    } catch (err) {
      err.message = 'context ' + index + ': ' + err.message;
      throw err;
    }
  });
  return { outputs };
}

function write(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on('line', (line) => {
  if (!line.trim()) {
    return;
  }
  let request;
  try {
    request = JSON.parse(line);
  } catch (err) {
    write({ id: null, error: 'invalid JSON request: ' + err.message });
    return;
  }
  try {
    write(Object.assign({ id: request.id }, handle(request)));
  } catch (err) {
    write({ id: request.id, error: String((err && err.message) || err) });
  }
});
rl.on('close', () => process.exit(0));
