// Drives a gateway (the devnet's or a real peer's) with the official Node Fabric Gateway client, as a bank's
// or distributor's integration would: TLS verification on (the devnet's TLS
// CA is the only trusted root, no server-name override), an identity read
// from the devnet's MSP files, the anchor chaincode's transactions.
//
// Usage: node gateway.mjs input.json
//
// The input names the endpoint, channel, chaincode, TLS CA file, MSP ID,
// certificate and key files, and the mode:
//   "probe":  evaluate LatestAnchor once and report the answer or the error.
//   "register": evaluate LatestAnchor, submit RegisterLog(origin, publicKey)
//             and read its commit status.
//   "anchor": submit Anchor(checkpoint, []), read its commit status,
//             receive the Anchored event from its block and evaluate
//             LatestAnchor again.
//   "again":  check that a second Anchor of the same checkpoint is refused.
//   "submit": submit input.fn(input.args), endorsed by
//             input.endorsingOrganizations when given (else as the gateway
//             plans), and report its result, commit status and, when
//             valid, its chaincode event; or the error (any chaincode: the
//             vouchers scenarios use it).
//   "evaluate": evaluate input.fn(input.args) and report the result or
//             the error.
// The steps are separate runs so that a caller can wait between them until
// every peer of a real network has committed the previous one (a real
// network's peers commit a block at slightly different times; other
// organizations' peers endorse the next step).
// It prints one JSON object on stdout; it exits non-zero only when it could
// not produce one.

import * as crypto from 'node:crypto';
import { readFile } from 'node:fs/promises';

import * as grpc from '@grpc/grpc-js';
import { connect, hash, signers } from '@hyperledger/fabric-gateway';

const utf8 = new TextDecoder();

function describeError(err) {
    const out = { name: err?.constructor?.name ?? typeof err, message: String(err?.message ?? err) };
    if (err?.code !== undefined) out.code = err.code;
    if (Array.isArray(err?.details)) {
        out.details = err.details.map((d) => ({ mspId: d.mspId, address: d.address, message: d.message }));
    }
    if (err?.transactionId) out.transactionId = err.transactionId;
    return out;
}

function commitOf(status) {
    return {
        transactionId: status.transactionId,
        code: status.code,
        successful: status.successful,
        blockNumber: status.blockNumber.toString(),
    };
}

async function main() {
    const input = JSON.parse(await readFile(process.argv[2], 'utf8'));
    const tlsRoot = await readFile(input.tlsCACert);
    const client = new grpc.Client(input.endpoint, grpc.credentials.createSsl(tlsRoot));
    const gateway = connect({
        client,
        identity: { mspId: input.mspId, credentials: await readFile(input.cert) },
        signer: signers.newPrivateKeySigner(crypto.createPrivateKey(await readFile(input.key))),
        hash: hash.sha256,
        evaluateOptions: () => ({ deadline: Date.now() + 10_000 }),
        endorseOptions: () => ({ deadline: Date.now() + 15_000 }),
        submitOptions: () => ({ deadline: Date.now() + 10_000 }),
        commitStatusOptions: () => ({ deadline: Date.now() + 60_000 }),
    });
    const out = { node: process.version, openssl: process.versions.openssl };
    try {
        const network = gateway.getNetwork(input.channel);
        const contract = network.getContract(input.chaincode);
        const latest = async () => utf8.decode(await contract.evaluateTransaction('LatestAnchor', input.origin));

        if (input.mode === 'probe') {
            try {
                out.latestBefore = await latest();
            } catch (err) {
                out.error = describeError(err);
            }
            return out;
        }

        if (input.mode === 'register') {
            out.latestBefore = await latest();
            const register = await contract.submitAsync('RegisterLog', { arguments: [input.origin, input.publicKey] });
            out.register = commitOf(await register.getStatus());
            return out;
        }

        if (input.mode === 'evaluate') {
            try {
                out.result = utf8.decode(await contract.evaluateTransaction(input.fn, ...input.args));
            } catch (err) {
                out.error = describeError(err);
            }
            return out;
        }

        if (input.mode === 'submit') {
            const options = { arguments: input.args };
            if (input.endorsingOrganizations) options.endorsingOrganizations = input.endorsingOrganizations;
            let submitted;
            try {
                submitted = await contract.submitAsync(input.fn, options);
            } catch (err) {
                out.error = describeError(err);
                return out;
            }
            out.result = utf8.decode(submitted.getResult());
            out.commit = commitOf(await submitted.getStatus());
            if (!out.commit.successful) return out;
            const events = await network.getChaincodeEvents(input.chaincode, { startBlock: BigInt(out.commit.blockNumber) });
            try {
                for await (const event of events) {
                    if (event.transactionId !== out.commit.transactionId) continue;
                    out.event = { eventName: event.eventName, transactionId: event.transactionId, payload: utf8.decode(event.payload) };
                    break;
                }
            } finally {
                events.close();
            }
            return out;
        }

        if (input.mode === 'again') {
            try {
                await contract.submitTransaction('Anchor', input.checkpoint, JSON.stringify([]));
                out.again = { accepted: true };
            } catch (err) {
                out.again = { accepted: false, error: describeError(err) };
            }
            return out;
        }

        const anchor = await contract.submitAsync('Anchor', {
            arguments: [input.checkpoint, JSON.stringify([])],
        });
        out.anchorResult = JSON.parse(utf8.decode(anchor.getResult()));
        out.anchor = commitOf(await anchor.getStatus());
        // Listen from the block that holds the anchor: its event is there.
        const events = await network.getChaincodeEvents(input.chaincode, {
            startBlock: BigInt(out.anchor.blockNumber),
        });
        try {
            for await (const event of events) {
                if (event.transactionId !== out.anchor.transactionId) continue;
                out.event = {
                    chaincodeName: event.chaincodeName,
                    eventName: event.eventName,
                    transactionId: event.transactionId,
                    blockNumber: event.blockNumber.toString(),
                    payload: JSON.parse(utf8.decode(event.payload)),
                };
                break;
            }
        } finally {
            events.close();
        }
        out.latestAfter = JSON.parse(await latest());
        return out;
    } finally {
        gateway.close();
        client.close();
    }
}

main().then(
    (out) => process.stdout.write(JSON.stringify(out) + '\n'),
    (err) => {
        process.stderr.write(`gateway.mjs: ${err?.stack ?? err}\n`);
        if (err?.details) process.stderr.write(`details: ${JSON.stringify(err.details)}\n`);
        process.exitCode = 1;
    },
);
