/**
 * A minimal XML well-formedness check for the benchmark's hand-written SVG:
 * balanced and properly nested tags, quoted attributes, no bare '&' or '<' in text.
 * Returns null when well-formed, or a description of the first problem.
 */
export function xmlProblem(xml: string): string | null {
  const stack: string[] = [];
  let i = 0;
  let root = 0;
  const text = (s: string, at: number): string | null => {
    if (/&(?!(amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)/.test(s)) return `bare & in text at ${at}`;
    if (s.includes('>') && stack.length === 0 && s.trim()) return `text outside the root at ${at}`;
    return null;
  };
  while (i < xml.length) {
    const lt = xml.indexOf('<', i);
    if (lt < 0) {
      if (xml.slice(i).trim()) return 'text after the root element';
      break;
    }
    const t = text(xml.slice(i, lt), i);
    if (t) return t;
    if (xml.startsWith('<?', lt)) {
      const end = xml.indexOf('?>', lt);
      if (end < 0) return 'unterminated processing instruction';
      i = end + 2;
      continue;
    }
    if (xml.startsWith('<!--', lt)) {
      const end = xml.indexOf('-->', lt);
      if (end < 0) return 'unterminated comment';
      i = end + 3;
      continue;
    }
    const gt = xml.indexOf('>', lt);
    if (gt < 0) return `unterminated tag at ${lt}`;
    const tag = xml.slice(lt + 1, gt);
    if (tag.startsWith('/')) {
      const name = tag.slice(1).trim();
      const open = stack.pop();
      if (open !== name) return `</${name}> closes <${open ?? 'nothing'}> at ${lt}`;
    } else {
      const selfClosing = tag.endsWith('/');
      const body = selfClosing ? tag.slice(0, -1) : tag;
      const m = /^([A-Za-z_][\w:.-]*)(.*)$/s.exec(body);
      if (!m) return `bad tag name at ${lt}`;
      const attrs = m[2].trim();
      if (attrs && !/^([A-Za-z_][\w:.-]*="[^"<]*"\s*)+$/.test(attrs)) return `bad attributes in <${m[1]}> at ${lt}: ${attrs.slice(0, 60)}`;
      if (/&(?!(amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)/.test(attrs)) return `bare & in attributes of <${m[1]}>`;
      if (stack.length === 0) {
        root++;
        if (root > 1) return 'more than one root element';
      }
      if (!selfClosing) stack.push(m[1]);
    }
    i = gt + 1;
  }
  if (stack.length) return `unclosed <${stack[stack.length - 1]}>`;
  if (root !== 1) return 'no root element';
  return null;
}
