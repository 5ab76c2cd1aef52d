// GET /v1/models through the SDK.
import assert from 'node:assert/strict';

export default [
    {
        id: 'models.list',
        title: 'GET /v1/models lists objects of type model, including "mock"',
        needs: ['sdk'],
        async run(ctx) {
            const page = await ctx.client().models.list();
            const models = [];
            for await (const m of page) models.push(m);
            assert.ok(models.length > 0, 'empty model list');
            for (const m of models) {
                assert.equal(typeof m.id, 'string', `model without a string id: ${JSON.stringify(m)}`);
                assert.equal(m.object, 'model', `model ${m.id}: object`);
                assert.equal(typeof m.owned_by, 'string', `model ${m.id}: owned_by`);
            }
            const ids = models.map((m) => m.id);
            assert.ok(ids.includes('mock'), `"mock" missing from ${JSON.stringify(ids)}`);
            assert.equal(new Set(ids).size, ids.length, `duplicate model ids in ${JSON.stringify(ids)}`);
            if (ctx.target) assert.equal((await ctx.request('/v1/models')).json().object, 'list', 'top-level object of GET /v1/models');
        },
    },
];
