@description('The location for the resource(s) to be deployed.')
param location string = resourceGroup().location

param existingResourceName string

param existingResourceGroup string

param cache_kv_outputs_name string

resource cache 'Microsoft.Cache/redisEnterprise@2025-07-01' existing = {
  name: existingResourceName
  scope: resourceGroup(existingResourceGroup)
}

resource cache_default 'Microsoft.Cache/redisEnterprise/databases@2025-07-01' existing = {
  name: 'default'
  parent: cache
}

resource keyVault 'Microsoft.KeyVault/vaults@2024-11-01' existing = {
  name: cache_kv_outputs_name
}

resource connectionString 'Microsoft.KeyVault/vaults/secrets@2024-11-01' = {
  name: 'connectionstrings--cache'
  properties: {
    value: '${cache.properties.hostName}:10000,ssl=true,password=${cache_default.listKeys().primaryKey}'
  }
  parent: keyVault
}

resource primaryAccessKey 'Microsoft.KeyVault/vaults/secrets@2024-11-01' = {
  name: 'primaryaccesskey--cache'
  properties: {
    value: cache_default.listKeys().primaryKey
  }
  parent: keyVault
}

output name string = cache.name

output id string = cache.id

output hostName string = cache.properties.hostName
