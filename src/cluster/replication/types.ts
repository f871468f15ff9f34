/** The replication vocabulary lives in core (store and cluster both use it); re-exported for the cluster's code. */
export * from '../../core/replication.js';
