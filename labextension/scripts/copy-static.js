// Copy the Swagger UI and ReDoc bundles into the Python package, so that an API's
// /docs and /redoc pages render without internet access (nb2api/docs.py serves them).
const fs = require('fs');
const path = require('path');

const target = path.resolve(__dirname, '..', '..', 'nb2api', '_static');

const assets = [
  ['swagger-ui-dist/swagger-ui-bundle.js', 'swagger-ui/swagger-ui-bundle.js'],
  ['swagger-ui-dist/swagger-ui.css', 'swagger-ui/swagger-ui.css'],
  ['swagger-ui-dist/favicon-32x32.png', 'swagger-ui/favicon-32x32.png'],
  ['swagger-ui-dist/LICENSE', 'swagger-ui/LICENSE'],
  ['redoc/bundles/redoc.standalone.js', 'redoc/redoc.standalone.js'],
  ['redoc/LICENSE', 'redoc/LICENSE']
];

for (const [from, to] of assets) {
  const source = require.resolve(from);
  const dest = path.join(target, to);
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  fs.copyFileSync(source, dest);
  console.log(`copied ${from} -> nb2api/_static/${to}`);
}
