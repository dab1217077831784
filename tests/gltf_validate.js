// Validate .glb files with the Khronos glTF validator; prints one JSON report per file (a JSON list).
// Usage: node tests/gltf_validate.js VALIDATOR_DIR FILE...
const fs = require("fs");
const path = require("path");
const validator = require(path.resolve(process.argv[2]));

(async () => {
  const reports = [];
  for (const file of process.argv.slice(3)) {
    const report = await validator.validateBytes(new Uint8Array(fs.readFileSync(file)), {
      uri: path.basename(file),
      maxIssues: 200,
    });
    reports.push(report);
  }
  process.stdout.write(JSON.stringify(reports));
})().catch((err) => {
  console.error(String(err));
  process.exit(1);
});
