import { booking, testApp } from '../service/test-support/harness.js';

const { app } = await testApp({ flags: { mlWeight: 0 } });
const body = JSON.stringify(booking());
const N = 30000;
const t = performance.now();
for (let i = 0; i < N; i++)
  await app.request('/v1/predictions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
  });
console.log((((performance.now() - t) * 1000) / N).toFixed(1), 'us/op');
process.exit(0);
