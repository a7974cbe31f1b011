// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title SETS write-once registry of CTI hashes, version 2: per-writer records, writers bound to collections
/// @notice The "DataStorage" contract of the SETS paper (§4.1, WriteCTIHash / ReadCTIHash):
///         a write-once map from a 32-byte key k (derived from the object's metadata m_t:
///         collection id, object id, version) to the SHA-256 hash h_t of the STIX object.
///         Only hashes are stored, never the object itself (privacy, right to be forgotten).
/// @dev    Rules:
///         - One map per writer: `records[key][writer]`. A writer can never block, overwrite or
///           pre-empt another writer's anchor under the same key (no key squatting); a reader
///           gets every anchor under a key and decides whose word counts.
///         - Writers are granted per *scope*: a collection scope (sha256 of the JCS of
///           [collectionId], computed off chain) or ANY_SCOPE (every collection). A write names
///           its scope (never ANY_SCOPE) and reverts unless the writer is granted that scope or
///           ANY_SCOPE.
///         - An anchor is *entitled* for a scope when it was written for that scope and its
///           writer is granted that scope (or ANY_SCOPE) now: revoking a writer withdraws its
///           word, the anchor itself stays.
///         - Write-once per writer: no function can overwrite or delete an anchored hash; the
///           zero hash is rejected (it means "absent").
///         - writeCTIHash reverts with KeyTaken when this writer already anchored the key,
///           whatever the hash.
///         - writeCTIHashes is all-or-nothing with one exception that makes retries safe: a key
///           where this writer already holds the *identical* hash in the *identical* scope
///           (anchored earlier, or earlier in the same batch) is skipped without an event; any
///           other record of this writer under the key reverts the whole batch with KeyTaken, so
///           nothing is half-written.
///         - The admin (the deployer) grants and revokes writers and hands the role over in two
///           steps (proposeAdmin, then acceptAdmin by the proposed account). The admin is not a
///           writer unless granted.
contract SetsRegistry {
    /// @dev One record fills three storage slots: the hash, the scope, then timestamp (8 bytes)
    ///      + block number (4 bytes; a hint for finding the transaction, it wraps after 2^32
    ///      blocks). The writer is the mapping key.
    struct Record {
        bytes32 hash;
        bytes32 scope;
        uint64 timestamp;
        uint32 blockNumber;
    }

    /// @notice The scope "every collection". Granted, it lets a writer write in any collection;
    ///         a write itself always names a collection scope.
    bytes32 public constant ANY_SCOPE = bytes32(0);

    /// @notice Current admin: grants and revokes writers, may propose a successor.
    address public admin;

    /// @notice The account proposed as the next admin (zero when none); it must acceptAdmin.
    address public pendingAdmin;

    /// @notice scope → account → granted.
    mapping(bytes32 => mapping(address => bool)) public isWriterFor;

    /// @notice The number of scopes granted to an account (ANY_SCOPE counts as one), so that a
    ///         connection test can say "granted nothing".
    mapping(address => uint256) public grantsOf;

    /// @dev key → writer → what that writer anchored under the key
    mapping(bytes32 => mapping(address => Record)) private records;

    /// @dev key → the writers that anchored under it, in write order
    mapping(bytes32 => address[]) private keyWriters;

    /// @notice `writer` anchored `hash` under `key` for `scope`.
    event CTIHashWritten(bytes32 indexed key, bytes32 indexed scope, bytes32 hash, address indexed writer);
    event WriterGranted(address indexed account, bytes32 indexed scope);
    event WriterRevoked(address indexed account, bytes32 indexed scope);
    event AdminProposed(address indexed admin, address indexed proposed);
    event AdminTransferred(address indexed previousAdmin, address indexed newAdmin);

    /// @notice This writer already anchored a hash under the key (write-once per writer).
    error KeyTaken(bytes32 key, address writer);
    /// @notice The caller is not granted the scope it writes in.
    error NotWriter(address account, bytes32 scope);
    /// @notice The caller is not the admin.
    error NotAdmin(address account);
    /// @notice The caller is not the proposed admin.
    error NotPendingAdmin(address account);
    /// @notice The zero hash cannot be anchored.
    error ZeroHash(bytes32 key);
    /// @notice A write must name a collection scope, not ANY_SCOPE.
    error ZeroScope();
    /// @notice Parallel arrays (scopes, keys, hashes / writers, scopes) differ in length.
    error LengthMismatch();
    /// @notice The zero address cannot be a writer.
    error ZeroAddress();

    modifier onlyAdmin() {
        if (msg.sender != admin) revert NotAdmin(msg.sender);
        _;
    }

    /// @param writers accounts granted from the start (may be empty), each with the scope at
    ///        the same index of `scopes` (ANY_SCOPE allowed); an account may appear repeatedly
    constructor(address[] memory writers, bytes32[] memory scopes) {
        if (writers.length != scopes.length) revert LengthMismatch();
        admin = msg.sender;
        emit AdminTransferred(address(0), msg.sender);
        for (uint256 i = 0; i < writers.length; i++) {
            _grant(writers[i], scopes[i]);
        }
    }

    /// @notice Whether `account` may write in `scope` (false for ANY_SCOPE: writes name a collection).
    function canWrite(bytes32 scope, address account) public view returns (bool) {
        return scope != ANY_SCOPE && (isWriterFor[scope][account] || isWriterFor[ANY_SCOPE][account]);
    }

    /// @notice Anchor `hash` under `key` for `scope`. Reverts with KeyTaken if this writer
    ///         anchored any hash under the key before; other writers' anchors do not matter.
    function writeCTIHash(bytes32 scope, bytes32 key, bytes32 hash) external {
        if (scope == ANY_SCOPE) revert ZeroScope();
        if (!canWrite(scope, msg.sender)) revert NotWriter(msg.sender, scope);
        if (hash == bytes32(0)) revert ZeroHash(key);
        if (records[key][msg.sender].hash != bytes32(0)) revert KeyTaken(key, msg.sender);
        _write(scope, key, hash);
    }

    /// @notice Anchor many (scope, key, hash) triples in one transaction. All-or-nothing, except
    ///         that keys where this writer already holds the identical hash in the identical
    ///         scope are skipped (see the contract notes).
    function writeCTIHashes(bytes32[] calldata scopes, bytes32[] calldata keys, bytes32[] calldata hashes) external {
        if (keys.length != hashes.length || keys.length != scopes.length) revert LengthMismatch();
        bool anyScope = isWriterFor[ANY_SCOPE][msg.sender];
        for (uint256 i = 0; i < keys.length; i++) {
            bytes32 scope = scopes[i];
            bytes32 key = keys[i];
            bytes32 hash = hashes[i];
            if (scope == ANY_SCOPE) revert ZeroScope();
            if (!anyScope && !isWriterFor[scope][msg.sender]) revert NotWriter(msg.sender, scope);
            if (hash == bytes32(0)) revert ZeroHash(key);
            Record storage r = records[key][msg.sender];
            bytes32 existing = r.hash;
            if (existing == bytes32(0)) {
                _write(scope, key, hash);
            } else if (existing != hash || r.scope != scope) {
                revert KeyTaken(key, msg.sender);
            }
        }
    }

    /// @notice Every anchor under `key`, in write order, each judged for `scope`.
    /// @return writers the accounts that anchored under the key
    /// @return hashes what each anchored
    /// @return scopes the scope each named when writing
    /// @return timestamps the block timestamp of each write (as the chain reports it)
    /// @return blocks the block number of each write
    /// @return entitled whether each anchor counts for `scope`: written for `scope` by an
    ///         account granted `scope` (or ANY_SCOPE) now
    function readCTIRecords(bytes32 scope, bytes32 key)
        external
        view
        returns (
            address[] memory writers,
            bytes32[] memory hashes,
            bytes32[] memory scopes,
            uint64[] memory timestamps,
            uint32[] memory blocks,
            bool[] memory entitled
        )
    {
        writers = keyWriters[key];
        uint256 n = writers.length;
        hashes = new bytes32[](n);
        scopes = new bytes32[](n);
        timestamps = new uint64[](n);
        blocks = new uint32[](n);
        entitled = new bool[](n);
        for (uint256 i = 0; i < n; i++) {
            Record storage r = records[key][writers[i]];
            hashes[i] = r.hash;
            scopes[i] = r.scope;
            timestamps[i] = r.timestamp;
            blocks[i] = r.blockNumber;
            entitled[i] = r.scope == scope && canWrite(scope, writers[i]);
        }
    }

    /// @notice What `writer` anchored under `key`; all zero when nothing.
    function readCTIRecord(bytes32 key, address writer)
        external
        view
        returns (bytes32 hash, bytes32 scope, uint64 timestamp, uint32 blockNumber)
    {
        Record storage r = records[key][writer];
        return (r.hash, r.scope, r.timestamp, r.blockNumber);
    }

    /// @notice Let `account` write in `scope` (a collection scope, or ANY_SCOPE for every collection).
    function grantWriter(address account, bytes32 scope) external onlyAdmin {
        _grant(account, scope);
    }

    /// @notice Withdraw `account`'s right to write in `scope`. What it anchored stays, but no
    ///         longer counts (entitled is judged at read time).
    function revokeWriter(address account, bytes32 scope) external onlyAdmin {
        if (isWriterFor[scope][account]) {
            isWriterFor[scope][account] = false;
            grantsOf[account] -= 1;
            emit WriterRevoked(account, scope);
        }
    }

    /// @notice Propose `proposed` as the next admin; it takes the role with acceptAdmin.
    ///         address(0) cancels a proposal. The current admin keeps the role until then.
    function proposeAdmin(address proposed) external onlyAdmin {
        pendingAdmin = proposed;
        emit AdminProposed(msg.sender, proposed);
    }

    /// @notice Take the admin role (only the proposed account).
    function acceptAdmin() external {
        if (msg.sender != pendingAdmin || msg.sender == address(0)) revert NotPendingAdmin(msg.sender);
        emit AdminTransferred(admin, msg.sender);
        admin = msg.sender;
        pendingAdmin = address(0);
    }

    function _grant(address account, bytes32 scope) private {
        if (account == address(0)) revert ZeroAddress();
        if (!isWriterFor[scope][account]) {
            isWriterFor[scope][account] = true;
            grantsOf[account] += 1;
            emit WriterGranted(account, scope);
        }
    }

    function _write(bytes32 scope, bytes32 key, bytes32 hash) private {
        records[key][msg.sender] = Record(hash, scope, uint64(block.timestamp), uint32(block.number));
        keyWriters[key].push(msg.sender);
        emit CTIHashWritten(key, scope, hash, msg.sender);
    }
}
