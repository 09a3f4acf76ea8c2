// Parses the AsyncAPI document on stdin with @asyncapi/parser (found through NODE_PATH);
// prints every diagnostic and exits 1 when one has error severity (0) or nothing parsed.
const { Parser } = require("@asyncapi/parser");

async function main() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const { document, diagnostics } = await new Parser().parse(Buffer.concat(chunks).toString());
  for (const d of diagnostics) {
    console.log(`${d.severity} ${d.code} ${JSON.stringify(d.path)}: ${d.message}`);
  }
  const errors = diagnostics.filter((d) => d.severity === 0);
  if (errors.length > 0 || document === undefined) {
    console.log(`invalid: ${errors.length} errors`);
    process.exit(1);
  }
  console.log(`valid AsyncAPI ${document.version()}: ${document.channels().length} channels`);
}

main().catch((e) => { console.error(e); process.exit(2); });
