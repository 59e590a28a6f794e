// Drives the npm package azure-actions-appservice-rest (the Kudu client of GitHub's
// azure/webapps-deploy and azure/functions-action) against a Kudu root, the way those actions
// call it, and writes what the client returned as JSON to OUT.
//
//   node kudu_client.js NODE_MODULES SCM_URI USER PASSWORD ACTION ARG OUT
//
// ACTION (ARG): zipdeploy ZIP (warm-up, deployUsingZipDeploy, then the deployment's details
// and log read back through the client), runfromzip ZIP (deployUsingRunFromZip: a synchronous
// zip deploy, as functions-action runs it), onedeploy ZIP (deployUsingOneDeploy of type zip), or
// report ID (updateDeploymentStatus: the record of a successful deployment webapps-deploy
// writes after deploying; an empty ID: the client's own, GITHUB_SHA and the time).
// A deployment the client reports as failed is {"error": ...}, not a crash: the test reads it.
"use strict";
const fs = require("fs");
const path = require("path");

const [modules, scmUri, username, password, action, arg, out] = process.argv.slice(2);
const { Kudu } = require(path.join(modules, "azure-actions-appservice-rest/Kudu/azure-app-kudu-service"));
const { KuduServiceUtility } = require(path.join(modules, "azure-actions-appservice-rest/Utilities/KuduServiceUtility"));

const kudu = new Kudu(scmUri, { username, password });
const utility = new KuduServiceUtility(kudu);
// What webapps-deploy passes as the custom message (its slot, the workflow's commit message).
const custom = { slotName: "production", commitMessage: "release from CI" };

async function zipdeploy() {
    await utility.warmpUp();
    const id = await utility.deployUsingZipDeploy(arg, custom);
    const details = await kudu.getDeploymentDetails(id);
    const log = await kudu.getDeploymentLogs(details.log_url);
    return { id, details, log };
}

async function runfromzip() {
    await utility.deployUsingRunFromZip(arg, custom);
    return {};
}

async function onedeploy() {
    const id = await utility.deployUsingOneDeploy(arg, custom, undefined, "zip", undefined, undefined);
    return { id, details: await kudu.getDeploymentDetails(id) };
}

async function report() {
    return { id: await utility.updateDeploymentStatus(true, arg || null, { type: "Deployment", slotName: "production" }) };
}

const actions = { zipdeploy, runfromzip, onedeploy, report };

actions[action]()
    .then((result) => fs.writeFileSync(out, JSON.stringify(result)))
    .catch((error) => fs.writeFileSync(out, JSON.stringify({ error: String(error && error.message || error) })));
