/*
 * Adds label matchers to every series selector of a PromQL expression, so that a board written as the rules are
 * (plain metric and recording rule names) reads one deployment only. Functions, aggregation operators, keywords and
 * the label lists of by/without/on/ignoring/group_left/group_right are left alone; string literals, label matchers
 * and range or subquery brackets are copied as they are.
 */

const KEYWORDS = new Set([
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'and',
  'or',
  'unless',
]);
const OTHER_WORDS = new Set(['bool', 'offset', 'atan2', 'inf', 'nan', 'Inf', 'NaN']);
const LABEL_LIST = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);
const AGGREGATIONS = new Set([
  'sum',
  'min',
  'max',
  'avg',
  'group',
  'stddev',
  'stdvar',
  'count',
  'count_values',
  'bottomk',
  'topk',
  'quantile',
  'limitk',
  'limit_ratio',
]);

/** The index just past the bracket closing the one opened at `start` (`{`, `[` or `(`), strings skipped. */
function closing(expr: string, start: number): number {
  const open = expr[start] as string;
  const close = ({ '{': '}', '[': ']', '(': ')' } as Record<string, string>)[open];
  let depth = 0;
  for (let i = start; i < expr.length; i++) {
    const c = expr[i];
    if (c === '"' || c === "'" || c === '`') i = stringEnd(expr, i) - 1;
    else if (c === open) depth++;
    else if (c === close && --depth === 0) return i + 1;
  }
  throw new Error(`unbalanced ${open} in: ${expr}`);
}

function stringEnd(expr: string, start: number): number {
  const quote = expr[start];
  for (let i = start + 1; i < expr.length; i++) {
    if (expr[i] === '\\' && quote !== '`') i++;
    else if (expr[i] === quote) return i + 1;
  }
  throw new Error(`unterminated string in: ${expr}`);
}

const skipSpace = (expr: string, i: number) => {
  while (i < expr.length && /\s/.test(expr[i] as string)) i++;
  return i;
};

/**
 * `expr` with `matchers` (e.g. `job="$job", namespace="$namespace"`) first in every series selector:
 * `rate(x_total{a="1"}[5m])` -> `rate(x_total{job="$job", namespace="$namespace", a="1"}[5m])`.
 */
export function withMatchers(expr: string, matchers: string): string {
  let out = '';
  let i = 0;
  while (i < expr.length) {
    const c = expr[i] as string;
    if (c === '"' || c === "'" || c === '`') {
      const end = stringEnd(expr, i);
      out += expr.slice(i, end);
      i = end;
    } else if (c === '[') {
      const end = closing(expr, i);
      out += expr.slice(i, end);
      i = end;
    } else if (c === '{') {
      // A selector by matchers alone, without a metric name.
      const end = closing(expr, i);
      out += `{${join(matchers, expr.slice(i + 1, end - 1))}}`;
      i = end;
    } else if (/[a-zA-Z_:]/.test(c)) {
      const word = (expr.slice(i).match(/^[a-zA-Z_:][a-zA-Z0-9_:]*/) as RegExpMatchArray)[0];
      const next = skipSpace(expr, i + word.length);
      out += word;
      i += word.length;
      if (LABEL_LIST.has(word) && expr[next] === '(') {
        const end = closing(expr, next);
        out += expr.slice(i, end);
        i = end;
      } else if (KEYWORDS.has(word) || OTHER_WORDS.has(word)) {
        // an operator or modifier
      } else if (expr[next] === '(' || (AGGREGATIONS.has(word) && /^(by|without)\b/.test(expr.slice(next)))) {
        // a function call, or an aggregation with its grouping first
      } else if (expr[next] === '{') {
        const end = closing(expr, next);
        out += `${expr.slice(i, next)}{${join(matchers, expr.slice(next + 1, end - 1))}}`;
        i = end;
      } else {
        out += `{${matchers}}`;
      }
    } else if (/[0-9.]/.test(c)) {
      // A number or a duration (offset 1d), never a selector.
      const literal = (expr.slice(i).match(/^[0-9.]+(e[+-]?[0-9]+)?[a-zA-Z]*/) as RegExpMatchArray)[0];
      out += literal;
      i += literal.length;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

const join = (matchers: string, inner: string) => (inner.trim() ? `${matchers}, ${inner.trim()}` : matchers);
