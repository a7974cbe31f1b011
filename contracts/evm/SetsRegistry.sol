// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title SETS write-once registry of CTI hashes
/// @notice The "DataStorage" contract of the SETS paper (§4.1, WriteCTIHash / ReadCTIHash):
///         a write-once map from a 32-byte key k (derived from the object's metadata m_t:
///         collection id, object id, version) to the SHA-256 hash h_t of the STIX object.
///         Only hashes are stored, never the object itself (privacy, right to be forgotten).
/// @dev    Rules:
///         - Write-once: no function can overwrite or delete an anchored hash.
///         - Only writers may write; the admin (the deployer, transferable) grants and revokes
///           writers. The admin is not a writer unless granted.
///         - The zero hash is rejected (it means "absent" in readCTIHash).
///         - writeCTIHash reverts with KeyTaken when the key is anchored, whatever the hash.
///         - writeCTIHashes is all-or-nothing with one exception that makes retries safe:
///           a key that already holds the *identical* hash (anchored earlier, or earlier in the
///           same batch) is skipped without an event; a key holding a *different* hash reverts
///           the whole batch with KeyTaken, so nothing is half-written.
contract SetsRegistry {
    /// @dev One record fills two storage slots: the hash, then writer (20 bytes) +
    ///      timestamp (8 bytes) + block number (4 bytes; a hint for finding the transaction,
    ///      it wraps after 2^32 blocks).
    struct Record {
        bytes32 hash;
        address writer;
        uint64 timestamp;
        uint32 blockNumber;
    }

    /// @notice Current admin: grants and revokes writers, may hand the role over.
    address public admin;

    /// @notice Accounts allowed to write.
    mapping(address => bool) public isWriter;

    mapping(bytes32 => Record) private records;

    /// @notice A hash was anchored under a key.
    event CTIHashWritten(bytes32 indexed key, bytes32 hash, address indexed writer);
    event WriterGranted(address indexed account);
    event WriterRevoked(address indexed account);
    event AdminTransferred(address indexed previousAdmin, address indexed newAdmin);

    /// @notice The key already holds a hash (write-once).
    error KeyTaken(bytes32 key);
    /// @notice The caller is not an authorised writer.
    error NotWriter(address account);
    /// @notice The caller is not the admin.
    error NotAdmin(address account);
    /// @notice The zero hash cannot be anchored.
    error ZeroHash(bytes32 key);
    /// @notice keys and hashes of a batch differ in length.
    error LengthMismatch(uint256 keys, uint256 hashes);
    /// @notice The zero address cannot be admin or writer.
    error ZeroAddress();

    modifier onlyAdmin() {
        if (msg.sender != admin) revert NotAdmin(msg.sender);
        _;
    }

    modifier onlyWriter() {
        if (!isWriter[msg.sender]) revert NotWriter(msg.sender);
        _;
    }

    /// @param writers accounts authorised to write from the start (may be empty)
    constructor(address[] memory writers) {
        admin = msg.sender;
        emit AdminTransferred(address(0), msg.sender);
        for (uint256 i = 0; i < writers.length; i++) {
            _grant(writers[i]);
        }
    }

    /// @notice Anchor `hash` under `key`. Reverts with KeyTaken if the key holds any hash.
    function writeCTIHash(bytes32 key, bytes32 hash) external onlyWriter {
        if (records[key].hash != bytes32(0)) revert KeyTaken(key);
        _write(key, hash);
    }

    /// @notice Anchor many (key, hash) pairs in one transaction. All-or-nothing, except that
    ///         keys already holding the identical hash are skipped (see the contract notes).
    function writeCTIHashes(bytes32[] calldata keys, bytes32[] calldata hashes) external onlyWriter {
        if (keys.length != hashes.length) revert LengthMismatch(keys.length, hashes.length);
        for (uint256 i = 0; i < keys.length; i++) {
            bytes32 existing = records[keys[i]].hash;
            if (existing == bytes32(0)) {
                _write(keys[i], hashes[i]);
            } else if (existing != hashes[i]) {
                revert KeyTaken(keys[i]);
            }
        }
    }

    /// @notice What is anchored under `key`; all zero when nothing is.
    /// @return hash the anchored hash
    /// @return writer the account that anchored it
    /// @return timestamp the block timestamp of the write (as the chain reports it)
    function readCTIHash(bytes32 key) external view returns (bytes32 hash, address writer, uint64 timestamp) {
        Record storage r = records[key];
        return (r.hash, r.writer, r.timestamp);
    }

    /// @notice readCTIHash plus the number of the block that holds the write (0 when absent),
    ///         so a client can find the transaction with one narrow log query.
    function readCTIRecord(bytes32 key)
        external
        view
        returns (bytes32 hash, address writer, uint64 timestamp, uint32 blockNumber)
    {
        Record storage r = records[key];
        return (r.hash, r.writer, r.timestamp, r.blockNumber);
    }

    /// @notice Authorise `account` to write.
    function grantWriter(address account) external onlyAdmin {
        _grant(account);
    }

    /// @notice Withdraw `account`'s right to write. Hashes it anchored stay anchored.
    function revokeWriter(address account) external onlyAdmin {
        if (isWriter[account]) {
            isWriter[account] = false;
            emit WriterRevoked(account);
        }
    }

    /// @notice Hand the admin role to `newAdmin`.
    function transferAdmin(address newAdmin) external onlyAdmin {
        if (newAdmin == address(0)) revert ZeroAddress();
        emit AdminTransferred(admin, newAdmin);
        admin = newAdmin;
    }

    function _grant(address account) private {
        if (account == address(0)) revert ZeroAddress();
        if (!isWriter[account]) {
            isWriter[account] = true;
            emit WriterGranted(account);
        }
    }

    function _write(bytes32 key, bytes32 hash) private {
        if (hash == bytes32(0)) revert ZeroHash(key);
        records[key] = Record(hash, msg.sender, uint64(block.timestamp), uint32(block.number));
        emit CTIHashWritten(key, hash, msg.sender);
    }
}
